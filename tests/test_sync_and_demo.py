"""The synchronous flavour, and the main job's `serve` command end to end."""

from __future__ import annotations

import asyncio
import socket
import sys

from client import SyncSandbox
from tests.conftest import new_sandbox_id
from tests.processes import ROOT


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_starts_a_persistent_server_a_worker_and_runs_the_demo(tmp_path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "serve",
        "--data-dir",
        str(tmp_path),
        "--port",
        str(_free_port()),
        "--ui-port",
        str(_free_port()),
        "--exit-after-demo",
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "demo succeeded" in text
    assert "X=42" in text
    assert (tmp_path / "temporal.db").stat().st_size > 0
