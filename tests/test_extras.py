"""The core install runs sessions: a worker and the Python client, with every extra's packages
unimportable (tests/without_extras.py), start a bash session, run a call and destroy it; what
needs an extra says which one to install."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contract.extras import EXTRAS
from tests.processes import ROOT, run_to_end
from tests.without_extras import BLOCKED

RUNNER = [sys.executable, "-m", "tests.without_extras"]

#: Run by the client's process: one session's life, then what the extras' absence looks like.
CLIENT = """
import asyncio, json, sys
from tests.without_extras import loaded_extras

async def main(address, queue, sandbox_id):
    from client import Sandbox
    from contract.extras import MissingExtra

    out = {}
    async with Sandbox(sandbox_id, address, task_queue=queue) as sb:
        created = await sb.create_session("bash")
        out["created"] = created["status"]
        result = await sb.execute("bash:run", {"command": "echo core-only"})
        out["code"], out["stdout"] = result["code"], result["data"]["stdout"]
        destroyed = await sb.destroy_session("bash")
        out["destroyed"] = destroyed["status"]
        try:  # the vm backend's warmup needs Pillow: the [vm] extra
            out["vm"] = str(await sb.create_session("vm"))
        except Exception as exc:
            out["vm"] = f"{type(exc).__name__}: {exc}"
    for module in ("integrations.openai_tools", "integrations.mcp_server"):
        try:
            __import__(module)
            out[module] = "imported"
        except MissingExtra as exc:
            out[module] = str(exc)
    out["loaded_extras"] = loaded_extras()
    print("RESULT " + json.dumps(out))

asyncio.run(main(*sys.argv[1:]))
"""


async def _run(*args: str, timeout: float = 120) -> tuple[int, str]:
    return await run_to_end(*RUNNER, *args, timeout=timeout)


@pytest.fixture
async def core_worker(address: str, queue: str) -> AsyncIterator[str]:
    """A worker on its own queue, started without any extra's packages."""
    proc = await asyncio.create_subprocess_exec(
        *RUNNER, "worker.py", "--address", address, "--task-queue", queue,
        cwd=str(ROOT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    drain: asyncio.Task[bytes] | None = None
    try:
        while not any(line.startswith("READY ") for line in seen):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"the worker exited before READY:\n{''.join(seen)}"
            seen.append(line)
        drain = asyncio.create_task(proc.stdout.read())  # never let a full pipe block it
        yield queue
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            drain.cancel()


def test_the_blocked_list_covers_every_extra() -> None:
    """Every optional module contract.extras names is blocked here (and so is tested absent)."""
    assert set(EXTRAS) <= BLOCKED


async def test_a_session_call_works_with_no_extra_installed(
    address: str, core_worker: str, tmp_path: Path
) -> None:
    script = tmp_path / "client_only.py"
    script.write_text(CLIENT)
    sandbox_id = f"extras-{uuid.uuid4().hex[:8]}"
    code, out = await _run(str(script), address, core_worker, sandbox_id)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert code == 0 and lines, out
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["created"] == "success" and result["destroyed"] == "success", result
    assert (result["code"], result["stdout"]) == (0, "core-only\n"), result
    assert result["loaded_extras"] == [], result
    # What needs an extra fails where it is used, naming the extra to install.
    assert "durable-sessions[vm]" in result["vm"], result
    assert "durable-sessions[agents]" in result["integrations.openai_tools"], result
    assert "durable-sessions[mcp]" in result["integrations.mcp_server"], result


async def test_the_command_names_its_extra_instead_of_a_traceback() -> None:
    code, out = await _run("-m", "cli", "--help")
    assert code != 0 and "pip install 'durable-sessions[cli]'" in out, out
    assert "Traceback" not in out, out
