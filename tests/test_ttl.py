"""The TTL is a durable workflow timer: idle sessions are cleaned up at their deadline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client

from client import Sandbox
from client.transport import SessionGone, send
from contract import DeadlineAttr, ExecuteRequest, SessionSummary
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess
from tests.test_quickstart import _alive
from workflows import SessionWorkflow


async def test_idle_session_is_cleaned_up_at_its_deadline(
    client: Client, worker: WorkerProcess
) -> None:
    sandbox = Sandbox(new_sandbox_id(), client=client, session_ttl=2)
    await sandbox.create_session("bash")
    run = await sandbox.execute("bash:run", {"command": "readlink /proc/self/ns/pid"})
    pid = run["data"]["stdout"].strip()  # the sandbox's pid namespace

    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")
    summary: SessionSummary = await asyncio.wait_for(handle.result(), 30)

    assert summary.status == "expired"
    assert summary.reason == "expired"
    assert not _alive(pid), "the backend's cleanup must have ended the shell"
    events = await sandbox.get_events("bash", kind="cleanup")
    assert [e["code"] for e in events["events"]] == [0]
    # Closed at the deadline, not long after it.
    desc = await handle.describe()
    assert desc.close_time is not None
    deadline = (await handle.query(SessionWorkflow.describe)).deadline
    assert deadline is not None
    assert abs((desc.close_time - deadline).total_seconds()) < 3

    # Its state is gone: a call says so (4010, when and why) instead of answering from a fresh
    # temporary shell, unless the caller asks for that.
    after = await sandbox.execute("bash:run", {"command": "echo hi"})
    assert after["code"] == 4010, after
    assert "expired at" in after["message"] and "after_expiry" in after["message"]
    lenient = Sandbox(sandbox.sandbox_id, client=client, after_expiry="temporary")
    temp = await lenient.execute("bash:run", {"command": "echo hi"})
    assert temp["code"] == 0 and temp["meta"]["temporary_session"] is True
    # A destroyed session is the caller's own doing: the next call is a temporary one.
    await sandbox.create_session("bash")
    await sandbox.destroy_session("bash")
    again = await sandbox.execute("bash:run", {"command": "echo hi"})
    assert again["code"] == 0 and again["meta"]["temporary_session"] is True


async def test_the_server_tells_a_session_that_never_ran_from_one_that_ended(
    client: Client, worker: WorkerProcess
) -> None:
    """A call with no session looks for an ended one (to say why it ended) only when a run
    exists: the server's NOT_FOUND answers for the two cases are told apart."""
    sandbox = Sandbox(new_sandbox_id(), client=client)
    request = ExecuteRequest(tool="bash:run", params={"command": "true"}, request_id="r-1")

    def update(workflow_id: str) -> Any:
        handle = client.get_workflow_handle_for(SessionWorkflow.run, workflow_id)
        return lambda: handle.execute_update(SessionWorkflow.execute, request)

    with pytest.raises(SessionGone) as never:
        await send(update(f"{sandbox.sandbox_id}:bash"))
    assert never.value.never_ran is True

    await sandbox.create_session("bash")
    await sandbox.destroy_session("bash")
    with pytest.raises(SessionGone) as ended:
        await send(update(f"{sandbox.sandbox_id}:bash"))
    assert ended.value.never_ran is False


async def test_the_deadline_attribute_follows_the_session(
    client: Client, worker: WorkerProcess
) -> None:
    """SessionDeadline (what the UI and listings filter on) is within the session's one-minute
    slack of its deadline from the start (the client sets it), and moves with a refresh."""
    sandbox = Sandbox(new_sandbox_id(), client=client, session_ttl=600)
    await sandbox.create_session("bash")
    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")

    async def shown_and_true() -> tuple[datetime, datetime]:
        deadline = (await handle.query(SessionWorkflow.describe)).deadline
        shown = (await handle.describe()).typed_search_attributes.get(DeadlineAttr)
        assert deadline is not None and shown is not None
        return shown, deadline

    shown, deadline = await shown_and_true()
    assert abs(shown - deadline) < timedelta(seconds=60)
    await sandbox.refresh_sessions("bash", ttl=7200)
    shown, deadline = await shown_and_true()
    assert abs(shown - deadline) < timedelta(seconds=60)
    assert shown - datetime.now(UTC) > timedelta(seconds=7000)
    await sandbox.destroy_session("bash")


async def test_session_in_use_outlives_its_ttl(client: Client, worker: WorkerProcess) -> None:
    sandbox = Sandbox(new_sandbox_id(), client=client, session_ttl=2)
    created = await sandbox.create_session("bash")
    for _ in range(5):  # 5 s of use, more than twice the TTL
        await asyncio.sleep(1)
        result = await sandbox.execute("bash:run", {"command": "true"})
        assert result["code"] == 0
        assert result["meta"]["session_id"] == created["session_id"]
    for _ in range(3):
        await asyncio.sleep(1)
        refreshed = await sandbox.refresh_sessions("bash")
        assert refreshed["status"] == "success"
    view = await sandbox.describe_session("bash")
    assert view is not None and view["status"] == "active"
    await sandbox.destroy_session("bash")


async def test_refresh_can_set_a_shorter_ttl(client: Client, worker: WorkerProcess) -> None:
    sandbox = Sandbox(new_sandbox_id(), client=client, session_ttl=300)
    await sandbox.create_session("bash")
    await sandbox.refresh_sessions("bash", ttl=1)
    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")
    summary = await asyncio.wait_for(handle.result(), 15)
    assert summary.status == "expired"
