"""Failing fast, with what to do: a second `serve` on a busy port, no worker on a session's
queue, a stopped worker, a server that is not there."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from temporalio.client import Client

from cli.preflight import PreflightError, lock_data_dir
from client import Sandbox, SessionError, SessionManager, TemporalUnreachable
from tests.conftest import new_sandbox_id
from tests.devserver import free_port
from tests.processes import WorkerProcess, run_cli

#: The no-worker bound the tests use (seconds; the default is 10).
BOUND = 2.0


async def _cli(*args: str, timeout: float = 60) -> tuple[int, str]:
    """Run `python -m cli ARGS`; (exit code, stdout and stderr)."""
    return await run_cli(*args, timeout=timeout)


def _serve_args(tmp_path, *, port: int, ui_port: int, http_port: int) -> list[str]:
    return [
        "serve",
        "--data-dir",
        str(tmp_path),
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--http-port",
        str(http_port),
        "--exit-after-demo",
    ]


async def test_a_second_serve_on_a_running_servers_port_stops_before_starting_anything(
    address: str, tmp_path
) -> None:
    busy = int(address.rsplit(":", 1)[1])  # the test run's own Temporal dev server
    started = time.monotonic()
    code, out = await _cli(
        *_serve_args(tmp_path, port=busy, ui_port=free_port(), http_port=free_port())
    )
    assert code == 1, out
    assert time.monotonic() - started < 20
    assert f"port {busy} on 127.0.0.1 (Temporal gRPC, --port)" in out
    assert "temporal server start-dev" in out  # what holds it
    assert "A Temporal server already runs there" in out
    assert "./run.sh --port" in out  # how to run a second one beside it
    # Nothing started: no server, no worker, no demo.
    assert "READY" not in out and "[1/6]" not in out and "Traceback" not in out
    assert not (tmp_path / "temporal.db").exists()


@pytest.mark.parametrize("which", ["ui", "http"])
async def test_serve_names_any_busy_port_of_its_own(which: str, tmp_path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]
        ports = {"port": free_port(), "ui_port": free_port(), "http_port": free_port()}
        ports[f"{which}_port"] = held
        code, out = await _cli(*_serve_args(tmp_path, **ports))
    assert code == 1, out
    option = {"ui": "--ui-port", "http": "--http-port"}[which]
    assert f"port {held} on 127.0.0.1" in out and option in out
    assert "Stop that process, or choose other ports" in out
    assert "READY" not in out and "Traceback" not in out


def test_two_serves_never_share_a_data_folder(tmp_path) -> None:
    first = lock_data_dir(tmp_path)
    try:
        with pytest.raises(PreflightError, match="another `durable-sessions serve`"):
            lock_data_dir(tmp_path)
    finally:
        first.close()
    lock_data_dir(tmp_path).close()  # free again once the first is gone


async def _terminate_queue(client: Client, queue: str) -> None:
    """End what the test started on a queue no worker serves (it would run forever)."""
    async for execution in client.list_workflows(f"TaskQueue = '{queue}'"):
        if execution.status is not None and execution.status.name == "RUNNING":
            await client.get_workflow_handle(execution.id).terminate("test cleanup")


async def test_no_worker_on_the_queue_answers_unavailable_within_the_bound(
    client: Client, monkeypatch
) -> None:
    monkeypatch.setenv("SESSIONS_NO_WORKER_TIMEOUT", str(BOUND))
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    try:
        started = time.monotonic()
        with pytest.raises(SessionError) as refused:
            await sandbox.create_session("bash")
        assert time.monotonic() - started < BOUND + 6
        assert refused.value.code == 5015
        message = refused.value.message
        assert f"no worker is polling task queue '{queue}'" in message
        assert "python worker.py" in message and "./run.sh" in message

        started = time.monotonic()
        answer = await sandbox.execute("bash:run", {"command": "true"})
        assert answer["code"] == 5015, answer
        assert queue in answer["message"]
        assert time.monotonic() - started < BOUND + 6

        manager = SessionManager(client=client, task_queue=queue)
        with pytest.raises(SessionError) as manager_refused:
            await manager.create_session("someone", "agent", resource_type="bash")
        assert manager_refused.value.code == 5015
        assert queue in manager_refused.value.message
    finally:
        await _terminate_queue(client, queue)


async def test_a_worker_that_died_is_noticed_although_the_server_still_lists_it(
    client: Client, address: str, monkeypatch
) -> None:
    monkeypatch.setenv("SESSIONS_NO_WORKER_TIMEOUT", str(BOUND))
    queue = f"dies-{uuid.uuid4().hex[:8]}"
    worker = await WorkerProcess.start(address, args=["--task-queue", queue])
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    try:
        await sandbox.create_session("bash")
        await worker.kill()
        started = time.monotonic()
        answer = await sandbox.execute("bash:run", {"command": "true"})
        waited = time.monotonic() - started
        assert answer["code"] == 5015, answer
        assert f"no worker has taken work from task queue '{queue}'" in answer["message"]
        assert waited < 20, waited
    finally:
        await worker.kill()
        await _terminate_queue(client, queue)


async def test_an_unreachable_server_is_named_with_how_to_start_one() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(TemporalUnreachable) as sandbox_error:
        await Sandbox(new_sandbox_id(), nowhere).start()
    with pytest.raises(TemporalUnreachable) as manager_error:
        await SessionManager(address=nowhere).start()
    for error in (sandbox_error.value, manager_error.value):
        assert nowhere in str(error) and "./run.sh" in str(error)
        assert "connection refused" in str(error)


@pytest.mark.parametrize("command", [["demo"], ["sessions", "ls"]])
async def test_the_cli_says_the_server_is_down_in_one_line_and_exits_cleanly(
    command: list[str],
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    code, out = await _cli(*command, "--address", nowhere)
    assert code == 1, out
    assert f"cannot reach Temporal at {nowhere}" in out and "./run.sh" in out
    assert "Traceback" not in out
    assert "Fatal Python error" not in out
