"""The synchronous flavour, the main job's `serve` command end to end, and the demo a person
reads (tests/test_docs.py runs the README's commands on the session it leaves)."""

from __future__ import annotations

import asyncio
import os
import re
import sys

from temporalio.client import Client

from client import Sandbox, SyncSandbox
from tests.conftest import new_sandbox_id
from tests.devserver import free_port
from tests.processes import ROOT, WorkerProcess, serve_once


def test_sync_sandbox_runs_the_seed_flow(address: str, worker) -> None:
    with SyncSandbox(new_sandbox_id(), address) as sandbox:
        created = sandbox.create_session("bash", {"cwd": "/"})
        assert created["status"] == "success"
        sandbox.execute("bash:run", {"command": "cd /tmp"})
        result = sandbox.execute("bash:run", {"command": "pwd"})
        assert result["data"]["stdout"] == "/tmp\n"
        assert [s["resource_type"] for s in sandbox.list_sessions()["sessions"]] == ["bash"]
    # Leaving the block destroyed the session.
    with SyncSandbox(sandbox.sandbox_id, address) as again:
        assert again.list_sessions()["sessions"] == []


async def test_serve_starts_a_persistent_server_a_worker_and_runs_the_demo(tmp_path) -> None:
    code, text = await serve_once(tmp_path, http_port=(http_port := free_port()))
    assert code == 0, text
    assert "demo succeeded" in text
    assert f"HTTP API (AgentFlow protocol) on http://127.0.0.1:{http_port}" in text
    assert "listening on 127.0.0.1 only" in text  # no keys configured
    assert "X=42" in text
    assert "[6/6]" in text and "Left running for you" in text  # narrated, not raw JSON
    assert '"code":' not in text
    assert (tmp_path / "temporal.db").stat().st_size > 0


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=str(ROOT),
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_demo_keeps_a_users_own_session_and_leaves_one_for_the_readme(
    client: Client, address: str, worker: WorkerProcess
) -> None:
    # A session of the user's own under the name the old demo used (and destroyed).
    own = Sandbox("demo", client=client, destroy_on_exit=False)
    await own.create_session("bash")
    try:
        code, text = await _run(sys.executable, "-m", "cli", "demo", "--address", address)
        assert code == 0, text
        assert "demo succeeded" in text
        left = re.search(r"Left running for you: (demo-[0-9a-f]{6}:bash)", text)
        assert left, text
        assert (await own.describe_session("bash") or {}).get("status") == "active"
        demo = Sandbox(left.group(1).split(":")[0], client=client, admin=True)
        view = await demo.describe_session("bash")
        assert view is not None and view["status"] == "active" and view["user_id"] == "demo"
        await demo.destroy_session("bash")
    finally:
        await own.destroy_session("bash")
