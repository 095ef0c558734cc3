"""Request/reply over signals: a workflow calls a session and gets the envelope back, once,
across restarts of its own worker and of the session's worker."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client
from temporalio.worker import Worker

from client import Sandbox
from contract import ExecuteRequest, ReplyTo
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess
from tests.reply_caller import CALLER_QUEUE, ReplyCaller
from workflows import SessionWorkflow


def _caller_worker(client: Client) -> Worker:
    return Worker(client, task_queue=CALLER_QUEUE, workflows=[ReplyCaller])


async def test_a_caller_workflow_gets_each_answer_once_across_worker_restarts(
    client: Client, address: str
) -> None:
    # The session's own queue, so its only worker is the one this test restarts.
    queue = f"reply-{uuid.uuid4().hex[:8]}"
    session_worker = await WorkerProcess.start(address, args=["--task-queue", queue])
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    await sandbox.create_session("bash")
    session_id = f"{sandbox.sandbox_id}:bash"
    caller = _caller_worker(client)
    running = asyncio.create_task(caller.run())
    handle = await client.start_workflow(
        ReplyCaller.run, session_id, id=f"caller-{uuid.uuid4().hex[:8]}", task_queue=CALLER_QUEUE
    )
    try:
        session = client.get_workflow_handle_for(SessionWorkflow.run, session_id)
        for _ in range(100):  # the first call is answered
            if (await session.query(SessionWorkflow.describe)).call_count == 1:
                break
            await asyncio.sleep(0.1)
        await handle.signal(ReplyCaller.go)
        await asyncio.sleep(0.5)  # the second call is running in the session
        # Both workers go away mid-call: the caller's at once, the session's gracefully (the
        # call in flight finishes, its answer is signalled, the instance is released).
        await caller.shutdown()
        await running
        await session_worker.stop()
        session_worker = await WorkerProcess.start(address, args=["--task-queue", queue])
        caller = _caller_worker(client)
        running = asyncio.create_task(caller.run())
        first, second = await asyncio.wait_for(handle.result(), 60)
    finally:
        await caller.shutdown()
        await running
    assert first.code == 0, first
    assert second.code == 0 and second.data["stdout"] == "/tmp\n1\n", second
    view = await session.query(SessionWorkflow.describe)
    assert view.call_count == 2  # each request ran once
    events = (await session.query(SessionWorkflow.events)).events
    assert any(e.kind == "released" for e in events)  # the session's worker did go away
    await sandbox.destroy_session("bash")
    await session_worker.stop()


async def test_a_repeated_signal_is_answered_once_and_a_refusal_is_answered_too(
    client: Client, sandbox: Sandbox
) -> None:
    await sandbox.create_session("bash")
    session = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")
    # The reply goes to a workflow that does not exist: recorded, and the session goes on.
    reply_to = ReplyTo(workflow_id=f"nobody-{uuid.uuid4().hex[:6]}")
    req = ExecuteRequest(
        tool="bash:run", params={"command": "echo x"}, request_id="r-1", reply_to=reply_to
    )
    await session.signal(SessionWorkflow.execute_signal, req)
    await session.signal(SessionWorkflow.execute_signal, req)
    for _ in range(100):
        page = await session.query(SessionWorkflow.events)
        replies = [e for e in page.events if e.kind == "reply"]
        if replies:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    page = await session.query(SessionWorkflow.events)
    assert len([e for e in page.events if e.kind == "reply"]) == 1  # one answer per request id
    assert len([e for e in page.events if e.kind == "execute"]) == 1
    ok = await sandbox.execute("bash:run", {"command": "echo alive"})
    assert ok["code"] == 0
