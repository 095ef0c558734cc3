"""The operator CLI, `durable-sessions sessions ...`, driven as a person would: a subprocess
against the test run's server and worker."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

from temporalio.client import Client

from client import Sandbox, SessionManager
from tests.conftest import new_sandbox_id
from tests.processes import ROOT, WorkerProcess


async def _sessions(address: str, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run `python -m cli sessions ARGS --address ADDRESS`; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "sessions",
        *args,
        "--address",
        address,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _json(address: str, *args: str) -> Any:
    code, out, err = await _sessions(address, *args, "--json")
    assert code == 0, out + err
    return json.loads(out)


async def test_ls_filters_by_owner_type_and_state_and_hides_temporary_sessions(
    client: Client, address: str, worker: WorkerProcess
) -> None:
    owner = f"ops-{uuid.uuid4().hex[:8]}"
    manager = SessionManager(client=client, user_id=owner)
    shell = await manager.create_session(owner, "agent", resource_type="bash", name="the-shell")
    record = await manager.create_session(owner, "agent")  # a record, no resource
    await manager.set_session_state(shell.session_id, "paused")
    sandbox = Sandbox(new_sandbox_id(), client=client, user_id=owner)
    temporary = await sandbox.execute("bash:run", {"command": "true"})  # no session: temporary
    assert temporary["meta"]["temporary_session"] is True

    listed = await _json(address, "ls", "--owner", owner)
    assert {r["session_id"] for r in listed} == {shell.session_id, record.session_id}
    by_id = {r["session_id"]: r for r in listed}
    assert by_id[shell.session_id]["state"] == "paused"
    assert by_id[shell.session_id]["resource_type"] == "bash"
    assert by_id[shell.session_id]["owner"] == owner

    code, out, _ = await _sessions(address, "ls", "--owner", owner, "--type", "bash", "-q")
    assert code == 0 and out.split() == [shell.session_id]
    code, out, _ = await _sessions(address, "ls", "--owner", owner, "--state", "active", "-q")
    assert code == 0 and out.split() == [record.session_id]

    # Temporary one-call sessions only when asked (they close after their call: --all).
    everything = await _json(address, "ls", "--owner", owner, "--all", "--temporary")
    assert temporary["meta"]["workflow_id"] in {r["session_id"] for r in everything}
    closed_too = await _json(address, "ls", "--owner", owner, "--all")
    assert temporary["meta"]["workflow_id"] not in {r["session_id"] for r in closed_too}

    # The table a person reads.
    code, out, _ = await _sessions(address, "ls", "--owner", owner)
    assert code == 0
    assert shell.session_id in out and "paused" in out and "the-shell" in out
    for s in (shell, record):
        await manager.delete_session(s.session_id)


async def test_show_exec_events_tail_and_destroy_a_session(
    client: Client, address: str, worker: WorkerProcess, tmp_path
) -> None:
    owner = f"ops-{uuid.uuid4().hex[:8]}"
    sandbox = Sandbox(new_sandbox_id(), client=client, user_id=owner)
    await sandbox.create_session("bash", {"cwd": str(tmp_path)})
    session = f"{sandbox.sandbox_id}:bash"

    # exec: a tool call as an operator; the exit code follows the envelope's.
    code, out, err = await _sessions(
        address, "exec", session, "bash:run", '{"command": "export N=6; echo $((N * 7))"}'
    )
    assert code == 0, out + err
    assert "0 success" in out and "42" in out
    envelope = await _json(address, "exec", session, "bash:run", "-p", "command=echo $N")
    assert envelope["code"] == 0 and envelope["data"]["stdout"] == "6\n"
    code, out, err = await _sessions(address, "exec", session, "bash:nope")
    assert code == 1 and "4002" in out, out + err

    view = await _json(address, "show", session)
    assert view["user_id"] == owner and view["status"] == "active"
    assert view["call_count"] == 2
    assert [e["kind"] for e in view["last_events"]][-2:] == ["execute", "execute"]
    code, out, _ = await _sessions(address, "show", session)
    assert code == 0 and owner in out and "deadline" in out and "bash:run" in out

    page = await _json(address, "events", session, "--kind", "execute")
    assert [e["tool"] for e in page["events"]] == ["bash:run", "bash:run"]

    # tail follows the log from where it starts until the session closes.
    tail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "sessions",
        "tail",
        session,
        "--json",
        "-n",
        "1",
        "--interval",
        "0.2",
        "--address",
        address,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert tail.stdout is not None
    try:
        first = json.loads(await asyncio.wait_for(tail.stdout.readline(), 30))
        assert first["kind"] == "execute"  # the last event, before following
        followed = await sandbox.execute("bash:run", {"command": "echo followed"})
        assert followed["code"] == 0
        seen = json.loads(await asyncio.wait_for(tail.stdout.readline(), 30))
        assert seen["kind"] == "execute" and seen["request_id"] == followed["meta"]["request_id"]

        code, out, err = await _sessions(address, "destroy", session)
        assert code == 0, out + err
        assert f"{session}: closed" in out
        rest, _ = await asyncio.wait_for(tail.communicate(), 30)
        kinds = [json.loads(line)["kind"] for line in rest.decode().splitlines()]
        assert "destroy" in kinds and kinds[-1] == "closed"
        assert tail.returncode == 0
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()

    code, out, err = await _sessions(address, "destroy", f"{sandbox.sandbox_id}:nothing")
    assert code == 1 and "4007" in out, out + err


async def test_an_unknown_session_is_one_clear_line(address: str, worker: WorkerProcess) -> None:
    code, out, err = await _sessions(address, "show", "no-such-sandbox:bash")
    assert code == 1, out + err
    assert "no session 'no-such-sandbox:bash'" in err and "Traceback" not in err, out + err
