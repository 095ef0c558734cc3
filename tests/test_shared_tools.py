"""Shared tools need no session: one update and one local activity on a warm worker."""

from __future__ import annotations

from client import Sandbox


async def test_shared_tool_runs_without_a_session(sandbox: Sandbox) -> None:
    first = await sandbox.execute("tally:ping", {"value": "a"})
    assert first["code"] == 0, first
    assert first["meta"]["shared"] is True
    assert first["meta"]["session_id"] is None
    assert first["meta"]["temporary_session"] is False

    later = [await sandbox.execute("tally:ping", {"value": str(i)}) for i in range(5)]
    assert all(r["code"] == 0 for r in later)
    # Once known as shared, calls go to the sandbox's shared-tools workflow, not a session.
    assert {r["meta"]["workflow_id"] for r in later} == {f"{sandbox.sandbox_id}:shared"}
    assert (await sandbox.list_sessions())["sessions"] == []


async def test_shared_backend_is_warmed_once_per_worker(sandbox: Sandbox) -> None:
    warm = await sandbox.warmup(["tally"])
    assert warm["status"] == "success" and warm["warmed"] == ["tally"]
    results = [await sandbox.execute("tally:ping", {}) for _ in range(4)]
    assert {r["meta"]["workflow_id"] for r in results} == {f"{sandbox.sandbox_id}:shared"}
    assert {r["data"]["warmups"] for r in results} == {1}


async def test_shared_workflow_refuses_session_tools_and_bad_params(sandbox: Sandbox) -> None:
    await sandbox.warmup(["tally"])
    bad = await sandbox.execute("tally:ping", {"value": 3})
    assert bad["code"] == 4004
    unknown = await sandbox.execute("tally:nope", {})
    assert unknown["code"] == 4002


async def test_warmup_of_an_unknown_backend_is_a_clear_error(sandbox: Sandbox) -> None:
    result = await sandbox.warmup(["no-such-backend"])
    assert result["status"] == "error"
    assert result["code"] == 4002
    assert "no-such-backend" in result["message"]


async def test_warmup_with_one_name_warms_that_resource(sandbox: Sandbox) -> None:
    # A str names one resource type; it is not an iterable of one-letter names.
    result = await sandbox.warmup("bash")
    assert result["status"] == "success", result
    assert result["warmed"] == ["bash"]
