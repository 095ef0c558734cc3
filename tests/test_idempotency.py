"""request_id is the update id: a retried call runs once."""

from __future__ import annotations

import asyncio

from client import Sandbox
from tests.envelopes import untraced


async def test_same_request_id_twice_executes_once(sandbox: Sandbox, tmp_path) -> None:
    counter = tmp_path / "count"
    await sandbox.create_session("testkit")
    first = await sandbox.execute("testkit:count", {"path": str(counter)}, request_id="req-1")
    second = await sandbox.execute("testkit:count", {"path": str(counter)}, request_id="req-1")
    assert untraced(first) == untraced(second)
    assert counter.read_text().count("\n") == 1


async def test_concurrent_duplicates_execute_once(sandbox: Sandbox, tmp_path) -> None:
    counter = tmp_path / "count"
    await sandbox.create_session("testkit")
    results = await asyncio.gather(
        *(
            sandbox.execute("testkit:count", {"path": str(counter)}, request_id="same")
            for _ in range(5)
        )
    )
    assert all(untraced(r) == untraced(results[0]) for r in results)
    assert counter.read_text().count("\n") == 1


async def test_temporary_call_retried_with_its_request_id_runs_once(
    sandbox: Sandbox, tmp_path
) -> None:
    counter = tmp_path / "count"
    first = await sandbox.execute("testkit:count", {"path": str(counter)}, request_id="tmp-1")
    # The temporary session has finished by now; the retry must still not run it again.
    second = await sandbox.execute("testkit:count", {"path": str(counter)}, request_id="tmp-1")
    assert first["meta"]["temporary_session"] is True
    assert second["code"] == first["code"] == 0
    assert second["data"] == first["data"]
    assert counter.read_text().count("\n") == 1


async def test_signal_with_a_seen_request_id_does_not_run_again(sandbox: Sandbox, tmp_path) -> None:
    from contract import ExecuteRequest
    from workflows import SessionWorkflow

    counter = tmp_path / "count"
    await sandbox.create_session("testkit")
    await sandbox.execute("testkit:count", {"path": str(counter)}, request_id="sig-1")
    handle = sandbox.client.get_workflow_handle_for(
        SessionWorkflow.run, f"{sandbox.sandbox_id}:testkit"
    )
    req = ExecuteRequest(tool="testkit:count", params={"path": str(counter)}, request_id="sig-1")
    await handle.signal(SessionWorkflow.execute_signal, req)
    await sandbox.execute("testkit:count", {"path": str(counter)}, request_id="sig-2")
    assert counter.read_text().count("\n") == 2
