"""Sessions survive worker crashes and rolling restarts; nothing the caller was told is lost.

Each test runs its own workers on a task queue of its own, so it decides which worker holds the
session's instance, and kills or stops exactly that process.
"""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client

from client import Sandbox
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess, start_on
from tests.replaying import replay_workflow


async def test_worker_crash_recovers_the_session_on_another_worker(
    client: Client, address: str, queue: str, workers: list[WorkerProcess], tmp_path
) -> None:
    first = await start_on(address, queue, workers)
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    created = await sandbox.create_session("bash", {"cwd": str(tmp_path)})
    assert created["worker"] == first.queue
    await sandbox.execute("bash:run", {"command": "mkdir work && cd work && export STEP=7"})

    second = await start_on(address, queue, workers)
    await first.kill()
    killed_at = time.monotonic()

    lost = await sandbox.execute("bash:run", {"command": "echo should-not-matter"})
    assert lost["code"] == 5014, lost
    assert "resource lost, re-initialized" in lost["message"]
    assert lost["data"]["old_session_id"] == created["session_id"]
    after = await sandbox.execute("bash:run", {"command": "echo $PWD $STEP"})
    recovery_seconds = time.monotonic() - killed_at
    assert after["code"] == 0
    assert after["data"]["stdout"].split() == [str(tmp_path / "work"), "7"]
    assert after["meta"]["session_id"] == lost["data"]["new_session_id"]
    view = await sandbox.describe_session("bash")
    assert view is not None and view["worker"] == second.queue
    kinds = [e["kind"] for e in (await sandbox.get_events("bash", limit=100))["events"]]
    assert "resource_lost" in kinds and "recovered" in kinds
    print(f"kill -> first successful call on another worker: {recovery_seconds:.1f}s")
    assert recovery_seconds < 40
    await sandbox.destroy_session("bash")
    await replay_workflow(client, f"{sandbox.sandbox_id}:bash", "recovery_after_crash")


async def test_after_a_crash_a_tool_not_safe_to_repeat_is_not_run_twice(
    client: Client, address: str, queue: str, workers: list[WorkerProcess], tmp_path
) -> None:
    first = await start_on(address, queue, workers)
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    await sandbox.create_session("testkit")
    counter = tmp_path / "count"
    await sandbox.execute("testkit:count", {"path": str(counter)})
    second = await start_on(address, queue, workers)
    await first.kill()

    lost = await sandbox.execute("testkit:count", {"path": str(counter)})
    assert lost["code"] == 5014
    assert counter.read_text().count("\n") == 1, "the lost call must not have run silently"

    # A tool marked safe to repeat is run again on the new instance: the caller sees success.
    repeated = await sandbox.execute("testkit:pid", {})
    assert repeated["code"] == 0
    assert repeated["data"]["pid"] == second.pid
    await sandbox.destroy_session("testkit")


async def test_idempotent_tool_is_answered_after_a_crash(
    client: Client, address: str, queue: str, workers: list[WorkerProcess]
) -> None:
    first = await start_on(address, queue, workers)
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    await sandbox.create_session("testkit")
    second = await start_on(address, queue, workers)
    await first.kill()
    result = await sandbox.execute("testkit:pid", {})
    assert result["code"] == 0, result
    assert result["data"]["pid"] == second.pid
    kinds = [e["kind"] for e in (await sandbox.get_events("testkit", limit=100))["events"]]
    assert "retry" in kinds
    await sandbox.destroy_session("testkit")


async def test_graceful_shutdown_moves_sessions_without_an_error(
    client: Client, address: str, queue: str, workers: list[WorkerProcess], tmp_path
) -> None:
    first = await start_on(address, queue, workers)
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    created = await sandbox.create_session("bash", {"cwd": str(tmp_path)})
    await sandbox.execute("bash:run", {"command": "export ROLLING=1; mkdir r; cd r"})
    ns = {"command": "readlink /proc/self/ns/pid"}  # the sandbox's pid namespace
    pid = (await sandbox.execute("bash:run", ns))["data"]["stdout"].strip()
    second = await start_on(address, queue, workers)

    # An in-flight call finishes while the worker drains.
    in_flight = asyncio.create_task(
        sandbox.execute("bash:run", {"command": "sleep 2; echo finished"})
    )
    await asyncio.sleep(0.5)
    assert await first.stop() == 0
    done = await in_flight
    assert done["code"] == 0 and done["data"]["stdout"] == "finished\n"

    after = await sandbox.execute("bash:run", {"command": "echo $PWD $ROLLING"})
    assert after["code"] == 0, after
    assert after["data"]["stdout"].split() == [str(tmp_path / "r"), "1"]
    assert after["meta"]["session_id"] != created["session_id"]
    view = await sandbox.describe_session("bash")
    assert view is not None and view["worker"] == second.queue
    kinds = [e["kind"] for e in (await sandbox.get_events("bash", limit=100))["events"]]
    assert "released" in kinds
    from tests.test_quickstart import _alive

    assert not _alive(pid), "the stopping worker must have cleaned up its shell"
    await sandbox.destroy_session("bash")
    await replay_workflow(client, f"{sandbox.sandbox_id}:bash", "migration_after_graceful_shutdown")
