"""A short live demonstration of a durable session."""

from __future__ import annotations

import json
from typing import Any

from client.sandbox import Sandbox


def _show(title: str, value: Any) -> None:
    print(f"\n== {title}\n{json.dumps(value, indent=2, default=str)}", flush=True)


async def run_demo(address: str | None = None, namespace: str | None = None) -> bool:
    """Create a bash and a code session, use them and a shared search index, reinitialize, list
    and destroy; True when all worked."""
    async with Sandbox("demo", address, namespace) as sandbox:
        created = await sandbox.create_session("bash", {"cwd": "/tmp"})
        _show("create_session('bash', {'cwd': '/tmp'})", created)
        await sandbox.execute("bash:run", {"command": "mkdir -p demo && cd demo && export X=42"})
        run = await sandbox.execute("bash:run", {"command": "echo cwd=$PWD X=$X"})
        _show("execute('bash:run', ...) : cwd and X persisted from the previous call", run)
        temp = await sandbox.execute("python:missing", {})
        _show("execute on an unknown resource: an envelope, not a stack trace", temp)
        await sandbox.create_session("code")
        await sandbox.execute("code:execute", {"code": "import math\nr = 2"})
        cell = await sandbox.execute("code:execute", {"code": "round(math.pi * r**2, 3)"})
        _show("execute('code:execute', ...) : the import and r persisted", cell)
        query = {"query": "what happens when a session's TTL passes", "top_k": 1}
        found = await sandbox.execute("rag:search", query)
        _show("execute('rag:search', ...) : a shared index, no session needed", found)
        reinit = await sandbox.reinitialize("bash", {"cwd": "/"})
        _show("reinitialize('bash', {'cwd': '/'})", reinit)
        _show("list_sessions()", await sandbox.list_sessions())
        _show("destroy_session(['bash', 'code'])", await sandbox.destroy_session(["bash", "code"]))
        ok = (
            run["code"] == 0
            and "X=42" in run["data"]["stdout"]
            and cell["code"] == 0
            and cell["data"]["result"] == "12.566"
            and found["code"] == 0
            and found["data"]["results"][0]["source"] == "ttl.md"
            and reinit["status"] == "success"
        )
    print(f"\ndemo {'succeeded' if ok else 'FAILED'}", flush=True)
    return ok
