"""AgentFlow users move over unchanged (issue 25, items 1 and 2), on a real server and worker.

Written from AgentFlow's documented behaviour: its tools take ``**kwargs`` and its rollout
merges each task's ``kwargs`` into every tool call, so a parameter a tool does not declare is
dropped (named here in ``meta.ignored_params``), not refused; ``strict_params`` asks for the
refusal (4000). Its ``rag:search`` answers ``{query, context}`` (its quick reference reads
``data["context"]``) and its ``vm:screenshot`` ``{image, size, accessibility_tree}``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from temporalio.client import Client

from backends.base import Backend, tool
from backends.host import BackendHost
from client import Sandbox
from contract import ErrorCode
from http_api.app import create_app
from http_api.server import HttpService
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess
from tests.replaying import replayer
from tests.test_replay import PATCHES, _patch_markers
from workflows.execute_path import LENIENT_PARAMS
from workflows.params_check import check_params, unknown_params


async def test_an_undeclared_parameter_is_dropped_and_named(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    ran = await sandbox.execute("bash:run", {"command": "echo hi", "colour": "red"})
    assert ran["code"] == 0 and ran["data"]["stdout"] == "hi\n", ran
    assert ran["meta"]["ignored_params"] == ["colour"]
    # AgentFlow's rule: other keyword arguments join the params (a task's kwargs).
    merged = await sandbox.execute("bash:run", {"command": "echo $0"}, seed_path="x", n=3)
    assert merged["code"] == 0 and sorted(merged["meta"]["ignored_params"]) == ["n", "seed_path"]
    plain = await sandbox.execute("bash:run", {"command": "true"})
    assert plain["code"] == 0 and plain["meta"]["ignored_params"] == []


async def test_a_shared_tool_and_a_temporary_session_drop_them_too(sandbox: Sandbox) -> None:
    found = await sandbox.execute("rag:search", {"query": "q", "seed_path": "x"})
    assert found["code"] == 0 and found["meta"]["shared"] is True, found
    assert found["meta"]["ignored_params"] == ["seed_path"]
    once = await sandbox.execute("bash:run", {"command": "echo once", "task_id": 7})
    assert once["code"] == 0 and once["meta"]["temporary_session"] is True, once
    assert once["data"]["stdout"] == "once\n" and once["meta"]["ignored_params"] == ["task_id"]


async def test_strict_params_refuses_them_per_sandbox_and_per_call(
    client: Client, worker: WorkerProcess, sandbox: Sandbox
) -> None:
    await sandbox.create_session("bash")
    per_call = await sandbox.execute(
        "bash:run", {"command": "true", "colour": "red"}, strict_params=True
    )
    assert per_call["code"] == ErrorCode.INVALID_INPUT and "colour" in per_call["message"]
    strict = Sandbox(new_sandbox_id(), client=client, strict_params=True)
    async with strict:
        shared = await strict.execute("rag:search", {"query": "q", "seed_path": "x"})
        assert shared["code"] == ErrorCode.INVALID_INPUT and "seed_path" in shared["message"]
        temporary = await strict.execute("bash:run", {"command": "true", "colour": "red"})
        assert temporary["code"] == ErrorCode.INVALID_INPUT, temporary
        await strict.create_session("bash")
        refused = await strict.execute("bash:run", {"command": "true", "colour": "red"})
        assert refused["code"] == ErrorCode.INVALID_INPUT and "colour" in refused["message"]
        lenient = await strict.execute(
            "bash:run", {"command": "true", "colour": "red"}, strict_params=False
        )
        assert lenient["code"] == 0 and lenient["meta"]["ignored_params"] == ["colour"]
        batch = await strict.execute_batch(
            [
                {"action": "bash:run", "params": {"command": "true", "x": 1}},
                {
                    "action": "bash:run",
                    "params": {"command": "true", "x": 1},
                    "strict_params": False,
                },
            ],
            stop_on_error=False,
        )
        codes = [r["code"] for r in batch["data"]["results"]]
        assert codes == [ErrorCode.INVALID_INPUT, 0], batch


async def test_declared_parameters_are_still_checked(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    wrong = await sandbox.execute("bash:run", {"command": "ls", "timeout": "soon", "x": 1})
    assert wrong["code"] == ErrorCode.WRONG_TYPE and "timeout" in wrong["message"], wrong
    missing = await sandbox.execute("bash:run", {"seed_path": "x"})
    assert missing["code"] == ErrorCode.MISSING_FIELD and "command" in missing["message"]
    top_k = await sandbox.execute("rag:search", {"query": "q", "top_k": "five", "x": 1})
    assert top_k["code"] == ErrorCode.WRONG_TYPE, top_k
    # AgentFlow's top_k may be null: the default.
    default = await sandbox.execute("rag:search", {"query": "runaway loop", "top_k": None})
    assert default["code"] == 0 and 1 <= len(default["data"]["results"]) <= 5, default


async def test_a_batch_drops_them_per_call(sandbox: Sandbox) -> None:
    answer = await sandbox.execute_batch(
        [
            {"action": "rag:search", "params": {"query": "runaway loop", "seed_path": "x"}},
            {"action": "bash:run", "params": {"command": "echo b", "task": "t"}},
        ]
    )
    assert answer["code"] == 0, answer
    ignored = [r["meta"]["ignored_params"] for r in answer["data"]["results"]]
    assert ignored == [["seed_path"], ["task"]]


def test_the_workflows_schema_check_is_lenient_unless_strict() -> None:
    schema = {
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
        "additionalProperties": False,
    }
    params = {"command": "ls", "colour": "red"}
    assert check_params("bash:run", schema, params) is None
    assert unknown_params(schema, params) == ["colour"]
    strict = check_params("bash:run", schema, params, strict=True)
    assert strict is not None and strict[0] == ErrorCode.INVALID_INPUT
    assert unknown_params({**schema, "additionalProperties": True}, params) == []


class _Kwargs(Backend):
    name = "kw"
    shared = True

    @tool("kw:plain")
    async def plain(self, a: int) -> dict[str, Any]:
        return {"a": a}

    @tool("kw:open")
    async def open(self, a: int, **kwargs: Any) -> dict[str, Any]:
        return {"a": a, "kwargs": kwargs}


async def test_the_worker_drops_them_unless_the_tool_takes_kwargs() -> None:
    host = BackendHost([_Kwargs()])
    plain = await host.invoke("kw:plain", {"a": 1, "seed": 2}, None)
    assert (plain.code, plain.data, plain.ignored_params) == (0, {"a": 1}, ["seed"])
    strict = await host.invoke("kw:plain", {"a": 1, "seed": 2}, None, strict=True)
    assert strict.code == ErrorCode.INVALID_INPUT and "seed" in strict.message
    wrong = await host.invoke("kw:plain", {"a": "1", "seed": 2}, None)
    assert wrong.code == ErrorCode.WRONG_TYPE
    # A tool that takes **kwargs, as AgentFlow's do, gets them: nothing is ignored.
    taken = await host.invoke("kw:open", {"a": 1, "seed": 2}, None, strict=True)
    assert (taken.code, taken.data, taken.ignored_params) == (
        0,
        {"a": 1, "kwargs": {"seed": 2}},
        [],
    )
    assert host.tools["kw:open"].spec.params_schema.get("additionalProperties") is not False


async def test_a_session_that_dropped_a_parameter_replays(client: Client, sandbox: Sandbox) -> None:
    """The change is versioned (docs/versioning.md): a session's history records the patch where
    an undeclared parameter ran, and only there."""
    await sandbox.create_session("bash")
    await sandbox.execute("bash:run", {"command": "true"})
    handle = client.get_workflow_handle(f"{sandbox.sandbox_id}:bash")
    assert _patch_markers(await handle.fetch_history()) == []
    await sandbox.execute("bash:run", {"command": "true", "colour": "red"})
    await sandbox.execute("bash:run", {"command": "true", "colour": "blue"})
    history = await handle.fetch_history()
    assert _patch_markers(history) == [LENIENT_PARAMS] and LENIENT_PARAMS in PATCHES
    await replayer().replay_workflow(history)


@pytest.fixture
async def http_url(client: Client, worker: WorkerProcess) -> AsyncIterator[str]:
    service = HttpService(create_app(client=client), "127.0.0.1", 0)
    url = await service.start()
    yield url
    await service.stop()


async def test_over_http_a_body_field_or_a_header_asks_for_strict(http_url: str) -> None:
    worker_id = new_sandbox_id("af")

    async def post(path: str, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
        sent = {"X-Worker-ID": worker_id, **headers}
        async with (
            aiohttp.ClientSession() as http,
            http.post(http_url + path, json=body, headers=sent) as r,
        ):
            return r.status, await r.json()

    call = {"action": "rag:search", "params": {"query": "q", "seed_path": "x"}}
    status, body = await post("/api/v1/execute", call)
    assert (status, body["code"]) == (200, 0), body
    assert body["meta"]["ignored_params"] == ["seed_path"] and body["data"]["query"] == "q"
    status, body = await post("/api/v1/execute", {**call, "strict_params": True})
    assert (status, body["code"]) == (400, ErrorCode.INVALID_INPUT), body
    status, body = await post("/api/v1/execute", call, **{"X-Strict-Params": "true"})
    assert (status, body["code"]) == (400, ErrorCode.INVALID_INPUT), body
    status, body = await post(
        "/api/v1/execute", {**call, "strict_params": False}, **{"X-Strict-Params": "true"}
    )
    assert (status, body["code"]) == (200, 0), body
    bash = {"action": "bash:run", "params": {"command": "echo h", "kw": 1}}
    status, body = await post("/api/v1/execute/batch", {"actions": [call, bash]})
    assert (status, body["code"]) == (200, 0), body
    assert [r["meta"]["ignored_params"] for r in body["data"]["results"]] == [["seed_path"], ["kw"]]
    status, body = await post(
        "/api/v1/execute/batch",
        {"actions": [call, bash], "strict_params": True, "stop_on_error": False},
    )
    codes = [r["code"] for r in body["data"]["results"]]
    assert codes == [ErrorCode.INVALID_INPUT, ErrorCode.INVALID_INPUT], body


async def test_python_over_http_lenient_and_strict(http_url: str) -> None:
    async with Sandbox(new_sandbox_id("py"), server_url=http_url) as lenient:
        await lenient.create_session("bash")
        ran = await lenient.execute("bash:run", {"command": "echo h"}, seed_path="x")
        assert ran["code"] == 0 and ran["meta"]["ignored_params"] == ["seed_path"], ran
        refused = await lenient.execute("bash:run", {"command": "true", "x": 1}, strict_params=True)
        assert refused["code"] == ErrorCode.INVALID_INPUT, refused
    async with Sandbox(new_sandbox_id("py"), server_url=http_url, strict_params=True) as strict:
        refused = await strict.execute("rag:search", {"query": "q", "seed_path": "x"})
        assert refused["code"] == ErrorCode.INVALID_INPUT, refused
        batch = await strict.execute_batch(
            [{"action": "rag:search", "params": {"query": "q", "seed_path": "x"}}]
        )
        assert batch["data"]["results"][0]["code"] == ErrorCode.INVALID_INPUT, batch


async def test_rag_search_answers_agentflows_query_and_context(sandbox: Sandbox) -> None:
    found = await sandbox.execute("rag:search", {"query": "interrupt a runaway loop", "top_k": 2})
    assert found["code"] == 0, found
    data = found["data"]
    assert data["query"] == "interrupt a runaway loop" and data["results"]
    # AgentFlow's context: each document's title and text, the documents between "---" lines.
    parts = data["context"].split("\n---\n")
    assert len(parts) == len(data["results"])
    for part, result in zip(parts, data["results"], strict=True):
        assert part == f"[{result['source']}]\n{result['content']}"
    assert "runaway loop" in data["context"]
    nothing = await sandbox.execute("rag:search", {"query": "zebra xylophone"})
    assert nothing["data"]["results"] == [] and nothing["data"]["context"] == ""
    assert nothing["data"]["query"] == "zebra xylophone"


async def test_vm_screenshot_answers_agentflows_image_and_size(sandbox: Sandbox) -> None:
    await sandbox.create_session("vm", {"screen_size": "320x240"})
    shot = await sandbox.execute("vm:screenshot", {})
    assert shot["code"] == 0, shot
    data = shot["data"]
    assert data["image"] == data["png_base64"]
    assert base64.b64decode(data["image"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert data["size"] == [320, 240] == [data["width"], data["height"]]
    assert data["accessibility_tree"] is None
    asked = await sandbox.execute("vm:screenshot", {"accessibility_tree": True})
    assert asked["code"] == 0 and asked["data"]["accessibility_tree"] is None, asked
    # AgentFlow's own parameters are not refused: type's interval, scroll's clicks.
    typed = await sandbox.execute("vm:type", {"text": "a", "interval": 0.01})
    assert typed["code"] == 0, typed
    scrolled = await sandbox.execute("vm:scroll", {"x": 10, "y": 10, "clicks": -2})
    assert scrolled["code"] == 0, scrolled
