"""AgentFlow's MCP rollout as docs/integrations.md shows it ("AgentFlow rollouts"): the page's
files, as written (their ``/srv/agentflow`` prefix moved to a temporary directory), run through
the HTTP API with the requests AgentFlow's client sends (tests/agentflow_requests.py), in the
steps of AgentFlow's runner (its ``rollout/core/runner.py``, read, not run: AgentFlow is not
installed here), a scripted model in place of the LLM. Then the worker is killed and the
rollout's writes are there on the next call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.client import Client

from backends.mcp import ROOTS_ENV
from http_api.app import Limits, create_app
from http_api.server import HttpService
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.processes import ROOT, WorkerProcess

PREFIX = "/srv/agentflow"
SECTION = "## AgentFlow rollouts"


def documented_files() -> dict[str, str]:
    """The section's fenced blocks by the file the text before each names (its last
    ``/srv/agentflow/...`` path that is not a folder); the shell block names none."""
    page = (ROOT / "docs" / "integrations.md").read_text()
    section = page[page.index(SECTION) :]
    end = section.find("\n## ", len(SECTION))
    section = section if end < 0 else section[:end]
    files: dict[str, str] = {}
    for before, body in re.findall(r"(.*?)```\w*\n(.*?)```", section, re.S):
        paths = [p for p in re.findall(rf"`({PREFIX}/[^`]*)`", before) if not p.endswith("/")]
        if paths:
            files[paths[-1]] = body
    return files


@dataclass
class ToolCall:
    """AgentFlow's ``rollout.core.models.ToolCall``: what its runner records of each call."""

    tool_name: str
    parameters: dict[str, Any]
    result: Any
    success: bool


#: The scripted model: per turn, a tool and its arguments (what an LLM would ask for).
TURNS: list[tuple[str, dict[str, Any]]] = [
    ("mcp:memory.search_nodes", {"query": "Ada"}),
    ("mcp:filesystem.read_text_file", {"path": "/workspace/shelf/catalog.txt"}),
    (
        "mcp:memory.add_observations",
        {"observations": [{"entityName": "Ada Lovelace", "contents": ["answered library_001"]}]},
    ),
    ("mcp:filesystem.write_file", {"path": "/workspace/answer.txt", "content": "Ada Lovelace"}),
]


def allowed(name: str, available: list[str]) -> bool:
    """AgentFlow's ``get_tool_schemas`` filter: exact names, or ``<prefix>*`` wildcards."""
    return any(name.startswith(a[:-1]) if a.endswith("*") else name == a for a in available)


def text_of(data: dict[str, Any]) -> str:
    return "".join(c.get("text", "") for c in data["content"])


async def test_agentflow_mcp_rollout_as_documented(
    client: Client, address: str, queue: str, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    root = tmp_path / "agentflow"
    files = documented_files()
    assert len(files) == 6, sorted(files)
    for path, text in files.items():
        target = root / path.removeprefix(PREFIX + "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace(PREFIX, str(root)))
    config = json.loads((root / "rollout.json").read_text())
    tasks = [json.loads(line) for line in (root / "benchmark.jsonl").read_text().splitlines()]

    first = await WorkerProcess.start(
        address, env={ROOTS_ENV: str(root)}, args=["--task-queue", queue]
    )
    workers.append(first)
    service = HttpService(
        create_app(client=client, limits=Limits(), task_queue=queue), "127.0.0.1", 0
    )
    url = await service.start()
    w = new_sandbox_id("runner")  # the runner's worker_id
    try:
        async with aiohttp.ClientSession() as http:

            async def send(request: af.Call) -> dict[str, Any]:
                async with http.request(
                    request.method, url + request.path, json=request.body, headers=af.headers(w)
                ) as response:
                    body: dict[str, Any] = await response.json(content_type=None)
                    assert response.status == 200, body
                    return body

            # AgentRunner.start: a session per resource type, with its "content".
            for resource_type in config["resource_types"]:
                content = config["resource_init_configs"].get(resource_type, {}).get("content", {})
                created = await send(af.create_session(w, resource_type, content))
                assert created["code"] == 0, created
            # The tools: ours lists the session's servers' tools for the runner's worker id.
            listed = await send(af.list_tools())
            tools = {t["full_name"]: t for t in listed["tools"]}
            offered = sorted(n for n in tools if allowed(n, config["available_tools"]))
            for name, _ in TURNS:
                assert name in offered, offered
            assert tools["mcp:filesystem.write_file"]["params_schema"]["required"] == [
                "path",
                "content",
            ]

            # AgentRunner.run_task for each task: each tool call with the task's kwargs merged.
            for task in tasks:
                trajectory: list[ToolCall] = []
                for name, arguments in TURNS:
                    answer = await send(af.execute(w, name, {**arguments, **task["kwargs"]}))
                    trajectory.append(
                        ToolCall(name, arguments, answer.get("data"), answer.get("code", 0) == 0)
                    )
                    assert answer["meta"]["tool"] == name, answer["meta"]
                    assert answer["meta"]["ignored_params"] == ["seed_path"], answer["meta"]
                assert all(call.success for call in trajectory), trajectory
                found, catalog, _, wrote = (call.result for call in trajectory)
                assert "Ada Lovelace" in text_of(found), found
                # The initial workspace's graph; the preprocess step's file, with launch_time.
                assert text_of(catalog).startswith("Notes on the Analytical Engine"), catalog
                assert "(as of 2026-01-05 09:00:00)" in text_of(catalog), catalog
                assert "Successfully wrote" in text_of(wrote), wrote
                assert task["answer"] in text_of(found)

            # A lost worker: the graph and the files come back on another.
            workers.append(
                await WorkerProcess.start(
                    address, env={ROOTS_ENV: str(root)}, args=["--task-queue", queue]
                )
            )
            await first.kill()
            graph = await send_retrying(send, af.execute(w, "mcp:memory.read_graph"))
            ada = json.loads(text_of(graph["data"]))["entities"][0]
            assert ada["observations"] == ["wrote the first program", "answered library_001"]
            kept = await send(
                af.execute(w, "mcp:filesystem.read_text_file", {"path": "/workspace/answer.txt"})
            )
            assert text_of(kept["data"]) == "Ada Lovelace", kept
            # AgentRunner.stop
            for resource_type in config["resource_types"]:
                await send(af.destroy_session(w, resource_type))
    finally:
        await service.stop()


async def send_retrying(send: Any, request: af.Call) -> dict[str, Any]:
    """The call that meets the lost instance answers 5014 once (it says so); then it runs."""
    try:
        return dict(await send(request))
    except AssertionError as exc:
        assert "5014" in str(exc), exc
        return dict(await send(request))
