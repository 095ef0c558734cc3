"""Bad inputs found by an attacker (issue 23): each answers a clear error and changes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from client import Sandbox, SessionError, SessionManager
from contract import DEFAULT_TASK_QUEUE, ErrorCode, SessionInput, temporary_workflow_id
from contract.limits import MAX_METADATA_BYTES
from tests.conftest import new_sandbox_id

FILE_NAME_LIMIT = 255


def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def _started(client: Client, sandbox_id: str) -> list[str]:
    """The workflows started for a sandbox (visibility on the dev server is prompt)."""
    await asyncio.sleep(0.5)
    return [e.id async for e in client.list_workflows(f"SandboxId = '{sandbox_id}'")]


def _printable(answer: dict[str, Any]) -> None:
    """The answer can be sent on as UTF-8 JSON (no lone surrogate echoed back)."""
    json.dumps(answer, ensure_ascii=False).encode("utf-8")


# --- 1. malformed Sandbox.execute calls ----------------------------------------------------------

MALFORMED_CALLS = [
    pytest.param("bash:run", "echo hi", "params must be a mapping", id="params-a-string"),
    pytest.param(None, {"command": "ls"}, "tool must be a name", id="tool-none"),
    pytest.param(5, {"command": "ls"}, "tool must be a name", id="tool-an-int"),
    pytest.param("bash:run", {"command": "echo \ud800"}, "not valid Unicode", id="surrogate-param"),
    pytest.param("bash:run", {"\ud800": "x"}, "not valid Unicode", id="surrogate-param-name"),
    pytest.param("bash:r\ud800", {"command": "ls"}, "not valid Unicode", id="surrogate-tool"),
    pytest.param("\ud800", {"command": "ls"}, "not valid Unicode", id="surrogate-short-tool"),
    pytest.param("bash:run", {"command": "ls", "x": _nested(500)}, "nests deeper", id="deep"),
]


@pytest.mark.parametrize(("tool", "params", "says"), MALFORMED_CALLS)
async def test_malformed_execute_answers_an_envelope_and_starts_nothing(
    client: Client, sandbox: Sandbox, tool: Any, params: Any, says: str
) -> None:
    answer = await sandbox.execute(tool, params)
    assert answer["code"] == ErrorCode.INVALID_INPUT, answer
    assert says in answer["message"], answer
    assert answer["meta"]["trace_id"]
    _printable(answer)
    streamed = [item async for item in sandbox.execute_stream(tool, params)]
    assert len(streamed) == 1 and isinstance(streamed[0], dict)
    assert streamed[0]["code"] == ErrorCode.INVALID_INPUT
    batch = await sandbox.execute_batch([{"action": tool, "params": params}])
    assert batch["data"]["results"][0]["code"] == ErrorCode.INVALID_INPUT
    assert await _started(client, sandbox.sandbox_id) == []


async def test_extra_keyword_parameters_are_checked_too(sandbox: Sandbox) -> None:
    answer = await sandbox.execute("bash:run", {"command": "ls"}, deep=_nested(100))
    assert answer["code"] == ErrorCode.INVALID_INPUT
    assert "nests deeper" in answer["message"]


async def test_session_manager_execute_answers_malformed_calls(client: Client, worker) -> None:
    manager = SessionManager(client=client)
    user = f"u-{uuid.uuid4().hex[:8]}"
    record = await manager.create_session(user, "agent", resource_type="bash")
    try:
        for tool, params in ((None, {}), ("bash:run", "ls"), ("bash:run", {"c": "\udfff"})):
            answer = await manager.execute(record.session_id, tool, params, user_id=user)  # type: ignore[arg-type]
            assert answer["code"] == ErrorCode.INVALID_INPUT, answer
            _printable(answer)
        after = await manager.get_session(record.session_id, user_id=user)
        assert after is not None and after.call_count == 0
    finally:
        await manager.delete_session(record.session_id, user_id=user)


# --- 2. SessionManager refusals ------------------------------------------------------------------


async def test_session_manager_refuses_with_its_error_type(client: Client, worker) -> None:
    manager = SessionManager(client=client)
    user = f"u-{uuid.uuid4().hex[:8]}"
    record = await manager.create_session(user, "agent", metadata={"keep": 1})
    sid = record.session_id
    try:
        with pytest.raises(SessionError) as big:
            await manager.update_session_metadata(sid, {"k": "x" * 66_000}, user_id=user)
        assert big.value.code == ErrorCode.TOO_LARGE
        assert str(MAX_METADATA_BYTES) in big.value.message
        with pytest.raises(SessionError) as bogus:
            await manager.set_session_state(sid, "bogus", user_id=user)
        assert bogus.value.code == ErrorCode.INVALID_INPUT
        assert "active, idle or paused" in bogus.value.message
        with pytest.raises(SessionError) as deep:
            await manager.update_session_metadata(sid, {"k": _nested(500)}, user_id=user)
        assert deep.value.code == ErrorCode.INVALID_INPUT
        after = await manager.get_session(sid, user_id=user)
        assert after is not None
        assert (after.metadata, after.state) == ({"keep": 1}, record.state)
    finally:
        await manager.delete_session(sid, user_id=user)


# --- 3. file names and paths past the system's limits --------------------------------------------


async def test_write_file_refuses_paths_past_the_limits_up_front(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    long_name = await sandbox.execute("bash:write_file", {"path": "a" * 5000, "content": "x"})
    assert long_name["code"] == ErrorCode.INVALID_INPUT, long_name
    assert "255 bytes" in long_name["message"] and "aaaa" in long_name["message"]
    assert len(long_name["message"]) < 500
    deep = "/".join(["d"] * 1000) + "/f"
    nested = await sandbox.execute("bash:write_file", {"path": deep, "content": "x"})
    assert nested["code"] == ErrorCode.INVALID_INPUT, nested
    assert "directories deep" in nested["message"]
    long_path = "/".join(["d" * 200] * 30)
    too_long = await sandbox.execute("bash:write_file", {"path": long_path, "content": "x"})
    assert too_long["code"] == ErrorCode.INVALID_INPUT, too_long
    assert "bytes long" in too_long["message"]
    for tool in ("bash:read_file", "bash:list_files", "bash:remove_file"):
        refused = await sandbox.execute(tool, {"path": "b" * 300})
        assert refused["code"] == ErrorCode.INVALID_INPUT, refused
    listed = await sandbox.execute("bash:list_files", {})
    assert listed["code"] == 0 and listed["data"]["entries"] == []
    # A name of exactly the limit is written (its temporary name must fit too).
    longest = "n" * FILE_NAME_LIMIT
    written = await sandbox.execute("bash:write_file", {"path": f"sub/{longest}", "content": "x"})
    assert written["code"] == 0, written
    read = await sandbox.execute("bash:read_file", {"path": f"sub/{longest}"})
    assert read["data"]["content"] == "x"


# --- 4. background processes that cannot start ---------------------------------------------------


async def test_bash_start_refuses_what_it_cannot_start(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    for command in ("", "   "):
        empty = await sandbox.execute("bash:start", {"command": command})
        assert empty["code"] == ErrorCode.INVALID_INPUT, empty
        assert "empty" in empty["message"]
    missing = await sandbox.execute("bash:start", {"command": "sleep 1", "cwd": "/nope/x"})
    assert missing["code"] == ErrorCode.NOT_FOUND, missing
    assert "/nope/x" in missing["message"]
    status = await sandbox.execute("bash:status", {})
    assert status["data"]["processes"] == []
    # A relative cwd is the shell's current directory's.
    await sandbox.execute(
        "bash:run", {"command": "mkdir -p /tmp/bi-$$ && cd /tmp/bi-$$ && mkdir sub"}
    )
    here = await sandbox.execute("bash:start", {"command": "pwd", "cwd": "sub"})
    assert here["code"] == 0, here
    output = await sandbox.execute("bash:output", {"handle": here["data"]["handle"], "wait": 5})
    assert output["data"]["output"].strip().endswith("/sub")


# --- 5. a resource type no worker offers ---------------------------------------------------------


async def test_unknown_resource_type_starts_no_workflow_when_the_tools_are_known(
    client: Client, sandbox: Sandbox
) -> None:
    await sandbox.get_tools()  # the client now has the workers' catalog
    for tool in ("nosuch:tool", "python:run"):
        answer = await sandbox.execute(tool, {})
        assert answer["code"] == ErrorCode.UNKNOWN_TOOL, answer
        assert "no worker offers" in answer["message"] and "bash" in answer["message"]
    assert await _started(client, sandbox.sandbox_id) == []


async def test_unknown_resource_type_without_a_catalog_ends_its_workflow_at_once(
    client: Client, sandbox: Sandbox
) -> None:
    answer = await sandbox.execute("nosuch:tool", {}, request_id="r1")
    assert answer["code"] == ErrorCode.UNKNOWN_TOOL, answer
    handle = client.get_workflow_handle(temporary_workflow_id(sandbox.sandbox_id, "nosuch", "r1"))
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED


# --- 6. a session workflow started with the wrong arguments --------------------------------------


async def test_session_workflow_with_two_arguments_fails_at_once(client: Client, worker) -> None:
    inp = SessionInput(sandbox_id=new_sandbox_id(), resource_type="bash").model_dump(mode="json")
    handle = await client.start_workflow(
        "SessionWorkflow",
        args=[inp, inp],
        id=f"{inp['sandbox_id']}:bash",
        task_queue=DEFAULT_TASK_QUEUE,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), 30)
    assert "positional argument" in str(failed.value.cause)
    history = await handle.fetch_history()
    task_failures = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert task_failures == []
