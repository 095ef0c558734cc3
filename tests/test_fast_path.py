"""The fast path: calls on a held instance and temporary calls run as local activities, and a
batch of calls is one update."""

from __future__ import annotations

import asyncio
import time

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from client import Sandbox
from contract import BatchRequest, ExecuteRequest
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess
from tests.replaying import replay_workflow
from workflows import SessionWorkflow


async def _scheduled_activities(handle: WorkflowHandle) -> list[str]:
    history = await handle.fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def _markers(handle: WorkflowHandle) -> int:
    history = await handle.fetch_history()
    return sum(e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED for e in history.events)


async def _local_activities(handle: WorkflowHandle) -> int:
    history = await handle.fetch_history()
    return sum(
        e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        for e in history.events
    )


async def test_calls_on_a_held_instance_run_as_local_activities(
    client: Client, sandbox: Sandbox
) -> None:
    await sandbox.create_session("bash")
    for command in ("cd /tmp", "export N=1", "echo $PWD $N"):
        result = await sandbox.execute("bash:run", {"command": command})
        assert result["code"] == 0, result
    assert result["data"]["stdout"] == "/tmp 1\n"
    handle = client.get_workflow_handle(f"{sandbox.sandbox_id}:bash")
    # No task queue in between: initialize and every call are local activities (markers).
    assert "session.call_tool" not in await _scheduled_activities(handle)
    assert await _markers(handle) >= 4


async def test_a_temporary_call_is_one_local_activity(client: Client, sandbox: Sandbox) -> None:
    result = await sandbox.execute("bash:run", {"command": "echo once"}, request_id="tmp-fast")
    assert result["code"] == 0 and result["meta"]["temporary_session"] is True
    handle = client.get_workflow_handle(result["meta"]["workflow_id"])
    assert await _scheduled_activities(handle) == []
    assert await _markers(handle) >= 1


async def test_a_batch_is_answered_in_order_and_once(client: Client, sandbox: Sandbox) -> None:
    await sandbox.create_session("bash", {"cwd": "/tmp"})
    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")
    commands = ["echo a >> batch.txt", "cd /", "wc -l < /tmp/batch.txt", "pwd"]
    batch = BatchRequest(
        calls=[
            ExecuteRequest(tool="bash:run", params={"command": c}, request_id=f"b-{i}")
            for i, c in enumerate(commands)
        ]
    )
    first = await handle.execute_update(SessionWorkflow.execute_batch, batch)
    assert [e.code for e in first] == [0, 0, 0, 0]
    assert [e.meta.request_id for e in first] == ["b-0", "b-1", "b-2", "b-3"]
    assert first[2].data["stdout"] == "1\n" and first[3].data["stdout"] == "/\n"
    # The same batch again (a client's retry) is answered from memory: nothing runs twice.
    again = await handle.execute_update(SessionWorkflow.execute_batch, batch)
    assert again == first
    count = await sandbox.execute("bash:run", {"command": "wc -l < /tmp/batch.txt"})
    assert count["data"]["stdout"] == "1\n"


async def test_the_fallback_takes_the_pinned_queue_and_keeps_the_state(
    client: Client, address: str, queue: str, workers: list[WorkerProcess]
) -> None:
    # A worker that never answers locally: every call falls back to its pinned queue, as when
    # the workflow task runs on a worker that does not hold the instance.
    workers.append(
        await WorkerProcess.start(address, args=["--task-queue", queue, "--no-local-calls"])
    )
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    await sandbox.create_session("bash")
    await sandbox.execute("bash:run", {"command": "cd /tmp && export N=2"})
    result = await sandbox.execute("bash:run", {"command": "echo $PWD $N"})
    assert result["code"] == 0 and result["data"]["stdout"] == "/tmp 2\n"
    for _ in range(16):
        assert (await sandbox.execute("bash:run", {"command": "true"}))["code"] == 0
    handle = client.get_workflow_handle(f"{sandbox.sandbox_id}:bash")
    assert (await _scheduled_activities(handle)).count("session.call_tool") == 18
    # Once a local try found the instance elsewhere, the calls go straight to the pinned queue,
    # trying here again every 16th call: 2 tries, not 18 (and initialize's local activity).
    assert await _local_activities(handle) == 1 + 2
    await sandbox.destroy_session("bash")
    await replay_workflow(client, handle.id, "fallback_remember_elsewhere")


async def test_a_call_that_may_run_long_leaves_the_session_answering(
    client: Client, sandbox: Sandbox
) -> None:
    await sandbox.create_session("bash")
    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")
    # A timeout over 30 s: a regular activity with heartbeats, so queries are answered at once
    # (a local activity would hold the workflow task, and a query, for up to ~8 s).
    slow = asyncio.create_task(sandbox.execute("bash:run", {"command": "sleep 3", "timeout": 60}))
    await asyncio.sleep(1)
    started = time.monotonic()
    view = await handle.query(SessionWorkflow.describe)
    assert time.monotonic() - started < 1.5
    assert view.call_count == 0
    assert (await slow)["code"] == 0
    assert "session.call_tool" in await _scheduled_activities(handle)
