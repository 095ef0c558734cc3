"""Defects of the old session core, reproduced against a real server and worker.

Each test also checks the workflow's history for a failed workflow task: a bad input must be
refused, never retried by the server in a loop.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError

from client import Sandbox, SessionError, SessionManager
from contract import (
    CONTINUING_AS_NEW,
    AppendRequest,
    DestroyRequest,
    ExecuteRequest,
    ReinitializeRequest,
)
from tests.conftest import new_sandbox_id
from tests.devserver import DevServer
from tests.processes import WorkerProcess, start_on
from workflows import SessionWorkflow


async def assert_no_task_failures(handle: WorkflowHandle) -> None:
    history = await handle.fetch_history()
    failed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert not failed, f"{len(failed)} workflow task(s) failed in {handle.id}"


async def _events(handle: WorkflowHandle, kind: str) -> list:
    page = await handle.query(SessionWorkflow.events)
    return [e for e in page.events if e.kind == kind]


async def test_signal_with_a_huge_timeout_is_recorded_as_rejected_and_changes_nothing(
    client: Client, sandbox: Sandbox
) -> None:
    await sandbox.create_session("bash")
    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")
    before = await handle.query(SessionWorkflow.describe)
    bad = ExecuteRequest(tool="bash:run", params={"command": "true", "timeout": 1e300})
    await handle.signal(SessionWorkflow.execute_signal, bad)
    for _ in range(100):
        rejected = await _events(handle, "rejected")
        if rejected:
            break
        await asyncio.sleep(0.05)
    assert rejected and "params.timeout must be more than 0" in rejected[0].message
    after = await handle.query(SessionWorkflow.describe)
    assert after.call_count == before.call_count and after.deadline == before.deadline
    ok = await sandbox.execute("bash:run", {"command": "echo alive"})
    assert ok["code"] == 0 and ok["meta"]["temporary_session"] is False
    await assert_no_task_failures(handle)


@pytest.mark.parametrize("timeout", [1e300, math.inf, math.nan, 1e12, -5])
async def test_update_and_python_client_refuse_out_of_range_timeouts(
    client: Client, sandbox: Sandbox, timeout: float
) -> None:
    await sandbox.create_session("bash")
    result = await sandbox.execute("bash:run", {"command": "true", "timeout": timeout})
    assert result["code"] == 4000 and "params.timeout" in result["message"], result
    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")
    # The same request sent straight to the update is refused by the validator (JSON carries
    # inf and nan as null: a wrong type, 4004).
    req = ExecuteRequest(tool="bash:run", params={"command": "true", "timeout": timeout})
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(SessionWorkflow.execute, req)
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type in ("4000", "4004")
    assert "timeout" in refused.value.cause.message
    await assert_no_task_failures(handle)


def test_python_client_refuses_a_huge_session_ttl() -> None:
    for ttl in (1e300, math.inf, math.nan, 0, -1):
        with pytest.raises(ValueError, match="session_ttl"):
            Sandbox(session_ttl=ttl)


async def test_a_workflow_started_with_malformed_input_fails_at_once(
    client: Client, worker: WorkerProcess
) -> None:
    for bad in ({}, {"sandbox_id": "x", "resource_type": "bash", "ttl_seconds": 1e300}):
        handle = await client.start_workflow(
            "SessionWorkflow",
            bad,
            id=f"malformed-{uuid.uuid4().hex[:8]}",
            task_queue="durable-sessions",
        )
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), 20)
        await assert_no_task_failures(handle)


async def test_a_huge_role_and_oversized_metadata_are_refused(
    client: Client, worker: WorkerProcess
) -> None:
    manager = SessionManager(client=client, user_id="rolf")
    record = await manager.create_session("rolf", "agent")
    handle = client.get_workflow_handle_for(SessionWorkflow.run, record.session_id)
    # Straight to the workflow, bypassing the client's own checks: refused at decode.
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            "append", {"role": "x" * 1_000_000, "content": "hi", "user_id": "rolf"}
        )
    for i in range(2):
        await manager.update_session_metadata(record.session_id, {f"k{i}": "v" * 30_000})
    # Each request is within its own limit; the third would take the total over 64 KiB.
    with pytest.raises(SessionError, match="metadata would be"):
        await manager.update_session_metadata(record.session_id, {"k2": "v" * 30_000})
    view = await handle.query(SessionWorkflow.describe)
    assert sorted(view.metadata) == ["k0", "k1"]  # refused, and nothing else changed
    await assert_no_task_failures(handle)


async def test_reinitialize_and_open_check_the_owner(client: Client, worker: WorkerProcess) -> None:
    manager = SessionManager(client=client, user_id="olga")
    record = await manager.create_session("olga", "agent", resource_type="bash")
    handle = client.get_workflow_handle_for(SessionWorkflow.run, record.session_id)
    for req in (ReinitializeRequest(user_id="mallory"), ReinitializeRequest()):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(SessionWorkflow.reinitialize, req)
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == "4012"
    await handle.signal(SessionWorkflow.reinitialize_signal, ReinitializeRequest(user_id="eve"))
    await handle.signal(SessionWorkflow.destroy_signal, DestroyRequest())
    await asyncio.sleep(0.5)
    rejected = await _events(handle, "rejected")
    assert [e.code for e in rejected] == [4012, 4012]
    view = await handle.query(SessionWorkflow.describe)
    assert view.session_id == record.instance_id and view.status == "active"
    # The owner and an explicit administrator may.
    admin = SessionManager(client=client, admin=True)
    assert (await admin.get_session(record.session_id)) is not None
    await handle.execute_update(SessionWorkflow.reinitialize, ReinitializeRequest(user_id="olga"))
    await manager.delete_session(record.session_id)
    await assert_no_task_failures(handle)


@pytest.fixture
async def draining_server(tmp_path) -> AsyncIterator[DevServer]:
    # Continue-as-new is suggested early, so a session drains while a call still runs.
    server = DevServer(
        tmp_path / "temporal.db", dynamic_config={"limit.historyCount.suggestContinueAsNew": 40}
    )
    await server.start()
    yield server
    await server.stop()


async def test_destroy_while_draining_closes_the_session(draining_server: DevServer) -> None:
    worker = await WorkerProcess.start(draining_server.address)
    try:
        sandbox = Sandbox(new_sandbox_id(), draining_server.address)
        await sandbox.start()
        await sandbox.create_session("bash")
        handle = sandbox.client.get_workflow_handle_for(
            SessionWorkflow.run, f"{sandbox.sandbox_id}:bash"
        )
        # A call that may run long is a regular activity: the session keeps answering meanwhile.
        slow = asyncio.create_task(
            sandbox.execute("bash:run", {"command": "sleep 4; echo done", "timeout": 60})
        )
        # Grow the history with cheap updates until the session drains and refuses them.
        draining = False
        for i in range(60):
            try:
                await handle.execute_update(SessionWorkflow.append, AppendRequest(kind=f"n{i}"))
            except WorkflowUpdateFailedError as exc:
                assert isinstance(exc.cause, ApplicationError)
                assert exc.cause.type == CONTINUING_AS_NEW
                draining = True
                break
        assert draining, "the session never drained"
        started = time.monotonic()
        view = await asyncio.wait_for(
            handle.execute_update(SessionWorkflow.destroy, DestroyRequest()), 30
        )
        assert view.status == "closed"
        assert time.monotonic() - started < 15
        assert (await slow)["code"] == 0  # the call in flight finished first
        summary = await asyncio.wait_for(handle.result(), 10)
        assert summary.status == "closed"
        events = [e.event_type for e in (await handle.fetch_history()).events]
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED in events
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW not in events
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in events
    finally:
        await worker.stop()


async def test_recovery_retries_an_idempotent_call_once_not_forever(
    client: Client, address: str, queue: str, workers: list[WorkerProcess]
) -> None:
    # Three workers on a queue of their own; the tool kills whichever worker runs it.
    for _ in range(3):
        await start_on(address, queue, workers)
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    await sandbox.create_session("testkit")
    result = await asyncio.wait_for(sandbox.execute("testkit:crash", {}), 120)
    # Lost, re-created and retried once (that killed a second worker), lost and re-created
    # again, then answered: never a third run.
    assert result["code"] == 5014, result
    dead = [w for w in workers if w.proc.returncode is not None]
    assert len(dead) == 2, [w.proc.returncode for w in workers]
    events = (await sandbox.get_events("testkit", limit=100))["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("retry") == 1 and kinds.count("resource_lost") == 2, kinds
    await sandbox.destroy_session("testkit")
