"""A short live demonstration of a durable session."""

from __future__ import annotations

import json
from typing import Any

from client.sandbox import Sandbox


def _show(title: str, value: Any) -> None:
    print(f"\n== {title}\n{json.dumps(value, indent=2, default=str)}", flush=True)


async def run_demo(address: str | None = None, namespace: str | None = None) -> bool:
    """Create a bash session, use it, reinitialize it, list and destroy it; True when all worked."""
    async with Sandbox("demo", address, namespace) as sandbox:
        created = await sandbox.create_session("bash", {"cwd": "/tmp"})
        _show("create_session('bash', {'cwd': '/tmp'})", created)
        await sandbox.execute("bash:run", {"command": "mkdir -p demo && cd demo && export X=42"})
        run = await sandbox.execute("bash:run", {"command": "echo cwd=$PWD X=$X"})
        _show("execute('bash:run', ...) : cwd and X persisted from the previous call", run)
        temp = await sandbox.execute("python:missing", {})
        _show("execute on an unknown resource: an envelope, not a stack trace", temp)
        reinit = await sandbox.reinitialize("bash", {"cwd": "/"})
        _show("reinitialize('bash', {'cwd': '/'})", reinit)
        _show("list_sessions()", await sandbox.list_sessions())
        _show("destroy_session('bash')", await sandbox.destroy_session("bash"))
        ok = run["code"] == 0 and "X=42" in run["data"]["stdout"] and reinit["status"] == "success"
    print(f"\ndemo {'succeeded' if ok else 'FAILED'}", flush=True)
    return ok
