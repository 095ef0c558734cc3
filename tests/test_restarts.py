"""Server restarts and long sessions, on a dev server of the test's own with a SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from temporalio.client import Client

from client import Sandbox, SessionManager
from runtime.connection import connect
from tests.conftest import new_sandbox_id
from tests.devserver import DevServer
from tests.envelopes import untraced
from tests.processes import WorkerProcess
from tests.replaying import replay_workflow
from workflows import SessionWorkflow

#: Continue-as-new is suggested after this many history events (the default is thousands).
SUGGEST_CAN_AFTER = 120


@pytest.fixture
async def own_server(tmp_path) -> AsyncIterator[DevServer]:
    server = DevServer(
        tmp_path / "temporal.db",
        dynamic_config={"limit.historyCount.suggestContinueAsNew": SUGGEST_CAN_AFTER},
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def own_worker(own_server: DevServer) -> AsyncIterator[WorkerProcess]:
    worker = await WorkerProcess.start(own_server.address)
    yield worker
    await worker.stop()


async def test_session_survives_a_server_restart_and_its_deadline_still_fires(
    own_server: DevServer, own_worker: WorkerProcess
) -> None:
    sandbox = Sandbox(new_sandbox_id(), own_server.address, session_ttl=15)
    await sandbox.start()
    created = await sandbox.create_session("bash")
    await sandbox.execute("bash:run", {"command": "export BEFORE=restart"})

    await own_server.stop()
    await asyncio.sleep(1)
    client = await own_server.start()

    sandbox = Sandbox(sandbox.sandbox_id, client=client)
    result = await sandbox.execute("bash:run", {"command": "echo $BEFORE"})
    assert result["code"] == 0, result
    assert result["data"]["stdout"] == "restart\n"
    assert result["meta"]["session_id"] == created["session_id"]

    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:bash")
    deadline = (await handle.query(SessionWorkflow.describe)).deadline
    summary = await asyncio.wait_for(handle.result(), 60)
    assert summary.status == "expired"
    closed = (await handle.describe()).close_time
    assert deadline is not None and closed is not None
    assert abs((closed - deadline).total_seconds()) < 5
    assert closed <= datetime.now(UTC)


@pytest.mark.timeout(300)
async def test_hundreds_of_calls_cross_continue_as_new_without_losing_one(
    own_server: DevServer, own_worker: WorkerProcess
) -> None:
    client: Client = await connect(own_server.address)
    sandbox = Sandbox(new_sandbox_id(), client=client, session_ttl=120)
    await sandbox.create_session("testkit")
    calls = 400  # several runs' worth: continue-as-new is suggested every ~120 events
    semaphore = asyncio.Semaphore(8)  # under the server's 10 in-flight updates per workflow

    async def one(i: int) -> dict:
        async with semaphore:
            return await sandbox.execute("testkit:pid", {}, request_id=f"long-{i}")

    results = await asyncio.gather(*(one(i) for i in range(calls)))
    assert [r["code"] for r in results] == [0] * calls
    assert {r["meta"]["request_id"] for r in results} == {f"long-{i}" for i in range(calls)}

    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:testkit")
    view = await handle.query(SessionWorkflow.describe)
    assert view.call_count == calls
    assert view.status == "active"
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{sandbox.sandbox_id}:testkit'")]
    assert len(runs) > 3, "the session must have continued as new several times"
    # A request answered before continue-as-new is still answered once after it.
    again = await sandbox.execute("testkit:pid", {}, request_id=f"long-{calls - 1}")
    assert untraced(again) == untraced(results[-1])
    # The deadline came along: it is about one TTL after the last call.
    assert view.deadline is not None and view.ttl_seconds == 120
    await sandbox.destroy_session("testkit")
    # The first run ended in continue-as-new: it must replay against the current code.
    first_run = min(runs, key=lambda w: w.start_time)
    await replay_workflow(client, first_run.id, "continued_as_new", run_id=first_run.run_id)


async def test_checkpoints_metadata_and_history_cross_continue_as_new(
    own_server: DevServer, own_worker: WorkerProcess
) -> None:
    client: Client = await connect(own_server.address)
    manager = SessionManager(client=client, user_id="carol")
    sid = (await manager.create_session("carol", "a", {"k": "v"}, name="long talk")).session_id
    checkpoint = await manager.save_checkpoint(sid, {"turn": 0}, label="start")
    for i in range(60):  # each append is a few history events: several runs
        await manager.add_message(sid, "user", f"m{i}")

    runs = [w async for w in client.list_workflows(f"WorkflowId = '{sid}'")]
    assert len(runs) > 1, "the session must have continued as new"
    record = await manager.get_session(sid)
    assert record is not None
    assert (record.name, record.metadata, record.state) == ("long talk", {"k": "v"}, "active")
    assert (await manager.get_checkpoint(sid, checkpoint) or {}).get("data") == {"turn": 0}
    chat = await manager.get_chat_history(sid)
    assert [m["content"] for m in chat] == [f"m{i}" for i in range(60)]
    await manager.delete_session(sid)
