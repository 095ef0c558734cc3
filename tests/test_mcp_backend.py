"""The ``mcp`` resource type: stdio MCP servers per session, in its jail, through the client.

Real servers: npm's ``@modelcontextprotocol/server-filesystem`` and ``server-memory`` (installed
by scripts/setup.sh under :data:`backends.mcp.SERVERS_DIR`) and a small Python server of the
tests' own (tests/mcp_servers/echo_server.py), copied in as the task's initial workspace.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from backends.mcp import ROOTS_ENV, SERVERS_DIR
from client import Sandbox
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess

ECHO = Path(__file__).with_name("mcp_servers") / "echo_server.py"
PREPROCESS = """
import argparse, pathlib
parser = argparse.ArgumentParser()
parser.add_argument("--agent_workspace")
parser.add_argument("--launch_time")
args = parser.parse_args()
seed = pathlib.Path(__file__).with_name("seed.txt").read_text()  # beside it in the task dir
pathlib.Path(args.agent_workspace, "prepared.txt").write_text(seed + "launched " + args.launch_time)
"""
#: AgentFlow's server files, as they are (``type: stdio``, ``params``, placeholders).
SERVER_FILES = {
    "filesystem.yaml": """
type: stdio
name: filesystem
params:
  command: npx
  args: ["-y", "@modelcontextprotocol/server-filesystem", "${agent_workspace}"]
""",
    "memory.yaml": """
type: stdio
name: memory
params:
  command: npx
  args: ["-y", "@modelcontextprotocol/server-memory"]
  env:
    MEMORY_FILE_PATH: "${agent_workspace}/memory.jsonl"
""",
    "echo.yaml": """
type: stdio
name: echo
params:
  command: /usr/bin/python3
  args: ["${task_dir}/servers/echo_server.py"]
  env:
    PYTHONPATH: "${local_servers_paths}/python"
  cwd: "${agent_workspace}"
""",
}


@pytest.fixture
def mcp_config(tmp_path: Path) -> dict[str, Any]:
    """A config dir of server files and a task dir (initial workspace, preprocess)."""
    for package in ("server-filesystem", "server-memory"):
        installed = SERVERS_DIR / "node_modules" / "@modelcontextprotocol" / package
        assert installed.is_dir(), f"{installed} is missing: run bash scripts/setup.sh"
    configs = tmp_path / "mcp_servers"
    configs.mkdir()
    for name, text in SERVER_FILES.items():
        (configs / name).write_text(text)
    task = tmp_path / "task"
    (task / "initial_workspace" / "notes").mkdir(parents=True)
    (task / "servers").mkdir()
    shutil.copy(ECHO, task / "servers" / "echo_server.py")  # run from ${task_dir}
    (task / "initial_workspace" / "notes" / "hello.txt").write_text("hello from the task\n")
    (task / "preprocess").mkdir()
    (task / "preprocess" / "main.py").write_text(PREPROCESS)
    (task / "preprocess" / "seed.txt").write_text("seeded; ")
    return {"config_dir": str(configs), "task_dir": str(task)}


async def _worker(
    address: str, queue: str, workers: list[WorkerProcess], roots: Path
) -> WorkerProcess:
    """A worker on the test's queue whose sessions may name files under ``roots``."""
    started = await WorkerProcess.start(
        address, env={ROOTS_ENV: str(roots)}, args=["--task-queue", queue]
    )
    workers.append(started)
    return started


def _text(result: dict[str, Any]) -> str:
    assert result["code"] == 0, result
    assert result["data"]["isError"] is False, result["data"]
    return "".join(c.get("text", "") for c in result["data"]["content"])


async def test_filesystem_and_python_servers_in_the_session(
    client: Client,
    address: str,
    queue: str,
    workers: list[WorkerProcess],
    mcp_config: dict[str, Any],
    tmp_path: Path,
) -> None:
    await _worker(address, queue, workers, tmp_path)
    sandbox = Sandbox(new_sandbox_id("mcp"), client=client, task_queue=queue)
    config = {**mcp_config, "enabled_servers": ["filesystem", "echo"]}
    created = await sandbox.create_session("mcp", config)
    assert created["status"] == "success", created
    try:
        listed = await sandbox.execute("mcp:list_tools", {})
        assert listed["code"] == 0, listed
        tools = {t["name"]: t for t in listed["data"]["tools"]}
        assert {"mcp:filesystem.write_file", "mcp:filesystem.read_text_file"} <= set(tools)
        assert {"mcp:echo.echo", "mcp:echo.add", "mcp:echo.bump"} <= set(tools)
        assert tools["mcp:echo.add"]["input_schema"]["required"] == ["a", "b"]
        # The session lists the servers' tools as its own (its view, the workflow's checks).
        view = await sandbox.describe_session("mcp")
        assert view is not None and "mcp:echo.add" in view["tools"], view
        assert "mcp:filesystem.write_file" in view["tools"] and "mcp:call" in view["tools"]
        # The client's listing has them too, with the schemas the servers listed.
        listing = {t["full_name"]: t for t in await sandbox.get_tools()}
        assert listing["mcp:echo.add"]["params_schema"]["required"] == ["a", "b"], listing

        # The initial workspace and the preprocess step, as the filesystem server sees them.
        hello = await sandbox.execute(
            "mcp:call",
            {"server": "filesystem", "tool": "read_text_file",
             "arguments": {"path": "/workspace/notes/hello.txt"}},
        )  # fmt: skip
        assert _text(hello) == "hello from the task\n"
        prepared = await sandbox.execute("mcp:read_file", {"path": "prepared.txt"})
        assert prepared["data"]["content"].startswith("seeded; launched "), prepared
        # The task directory is no part of the workspace (its copy is in the jail's /tmp).
        listed_files = await sandbox.execute("mcp:list_files", {"path": "."})
        assert not any(".task" in str(e) for e in listed_files["data"]["entries"]), listed_files

        made = await sandbox.execute(
            "mcp:call",
            {"server": "filesystem", "tool": "create_directory",
             "arguments": {"path": "/workspace/out"}},
        )  # fmt: skip
        assert "Successfully created" in _text(made)
        wrote = await sandbox.execute(
            "mcp:call",
            {"server": "filesystem", "tool": "write_file",
             "arguments": {"path": "/workspace/out/answer.txt", "content": "forty-two"}},
        )  # fmt: skip
        assert "Successfully wrote" in _text(wrote)
        read = await sandbox.execute(
            "mcp:call",
            {"server": "filesystem", "tool": "read_text_file",
             "arguments": {"path": "/workspace/out/answer.txt"}},
        )  # fmt: skip
        assert _text(read) == "forty-two"
        # The same file through the session's own workspace tools: one workspace.
        same = await sandbox.execute("mcp:read_file", {"path": "out/answer.txt"})
        assert same["data"]["content"] == "forty-two"
        # Outside the workspace the filesystem server refuses (its allowed directory).
        outside = await sandbox.execute(
            "mcp:call",
            {
                "server": "filesystem",
                "tool": "read_text_file",
                "arguments": {"path": "/etc/passwd"},
            },
        )
        assert outside["code"] == 0 and outside["data"]["isError"] is True, outside

        added = await sandbox.execute(
            "mcp:call", {"server": "echo", "tool": "add", "arguments": {"a": 20, "b": 22}}
        )
        assert added["data"]["structuredContent"] == {"result": 42}, added
        short = await sandbox.execute(
            "mcp:call", {"tool": "echo.echo", "arguments": {"text": "hi"}}
        )
        assert _text(short) == "hi"
        listed_name = await sandbox.execute(
            "mcp:call", {"tool": "mcp:echo.echo", "arguments": {"text": "ho"}}
        )
        assert _text(listed_name) == "ho"
        # AgentFlow's name for a server's tool, called as it is: mcp:<server>.<tool>.
        named = await sandbox.execute("mcp:echo.add", {"a": 1, "b": 2})
        assert named["code"] == 0 and named["data"]["structuredContent"] == {"result": 3}, named
        assert named["meta"]["tool"] == "mcp:echo.add", named["meta"]
        unknown = await sandbox.execute("mcp:call", {"server": "echo", "tool": "nope"})
        assert unknown["code"] == 4002, unknown
        no_server = await sandbox.execute("mcp:call", {"server": "nope", "tool": "x"})
        assert no_server["code"] == 4008, no_server

        # A server that ends is started again by the next call to it.
        crashed = await sandbox.execute("mcp:call", {"tool": "echo.crash"})
        assert crashed["code"] == 5005 and "ended during the call" in crashed["message"], crashed
        revived = await sandbox.execute(
            "mcp:call", {"tool": "echo.echo", "arguments": {"text": "back"}}
        )
        assert _text(revived) == "back"
    finally:
        await sandbox.destroy_session("mcp")


async def test_memory_server_survives_a_killed_worker(
    client: Client,
    address: str,
    queue: str,
    workers: list[WorkerProcess],
    mcp_config: dict[str, Any],
    tmp_path: Path,
) -> None:
    first = await _worker(address, queue, workers, tmp_path)
    sandbox = Sandbox(new_sandbox_id("mcp"), client=client, task_queue=queue)
    config = {**mcp_config, "enabled_servers": ["memory", "echo"]}
    created = await sandbox.create_session("mcp", config)
    assert created["worker"] == first.queue, created
    entity = {"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]}
    stored = await sandbox.execute(
        "mcp:call",
        {"server": "memory", "tool": "create_entities", "arguments": {"entities": [entity]}},
    )
    assert stored["code"] == 0 and stored["data"]["isError"] is False, stored
    bumped = await sandbox.execute("mcp:call", {"server": "echo", "tool": "bump"})
    assert bumped["data"]["structuredContent"] == {"result": 1}, bumped
    removed = await sandbox.execute("mcp:remove_file", {"path": "notes/hello.txt"})
    assert removed["code"] == 0, removed

    second = await _worker(address, queue, workers, tmp_path)
    await first.kill()

    graph = await sandbox.execute("mcp:call", {"server": "memory", "tool": "read_graph"})
    if graph["code"] == 5014:  # the call that meets the lost instance says so, once
        assert "resource lost, re-initialized" in graph["message"], graph
        graph = await sandbox.execute("mcp:call", {"server": "memory", "tool": "read_graph"})
    assert graph["code"] == 0, graph
    names = [e["name"] for e in json.loads(_text(graph))["entities"]]
    assert names == ["Ada"], graph
    # The Python server's counter file came back with the workspace too: the next is 2.
    again = await sandbox.execute("mcp:call", {"server": "echo", "tool": "bump"})
    assert again["data"]["structuredContent"] == {"result": 2}, again
    # The workspace is the snapshot's, not the task's initial one again: the removed file stays
    # removed (the preprocess step ran again on the new instance; its file is the snapshot's).
    gone = await sandbox.execute("mcp:read_file", {"path": "notes/hello.txt"})
    assert gone["code"] == 4008, gone
    view = await sandbox.describe_session("mcp")
    assert view is not None and view["worker"] == second.queue
    await sandbox.destroy_session("mcp")


async def test_a_bad_server_definition_fails_the_create(
    client: Client,
    worker: WorkerProcess,
    address: str,
    queue: str,
    workers: list[WorkerProcess],
    mcp_config: dict[str, Any],
    tmp_path: Path,
) -> None:
    # The suite's worker names no MCP roots: a session cannot make it read its files.
    refused = await Sandbox(new_sandbox_id("mcp"), client=client).create_session(
        "mcp", {**mcp_config, "enabled_servers": ["echo"]}
    )
    assert refused["code"] == 4007 and "outside the worker's MCP roots" in refused["message"]
    await _worker(address, queue, workers, tmp_path)
    sandbox = Sandbox(new_sandbox_id("mcp"), client=client, task_queue=queue)
    broken = {
        "enabled_servers": ["gone"],
        "server_configs": {"gone": {"type": "stdio", "params": {"command": "/usr/bin/false"}}},
    }
    failed = await sandbox.create_session("mcp", broken)
    assert failed["status"] == "error" and failed["code"] == 4007, failed
    assert "MCP server 'gone' did not start" in failed["message"], failed
    other = Sandbox(new_sandbox_id("mcp"), client=client, task_queue=queue)
    missing = await other.create_session("mcp", {**mcp_config, "enabled_servers": ["missing"]})
    assert missing["code"] == 4007, missing
    assert "no definition of MCP server 'missing'" in missing["message"], missing
    # A placeholder AgentFlow does not know is refused, as AgentFlow's client refuses it.
    unknown = {"type": "stdio", "params": {"command": "node", "args": ["${workspace}/x.js"]}}
    odd = Sandbox(new_sandbox_id("mcp"), client=client, task_queue=queue)
    placeholder = await odd.create_session(
        "mcp", {"enabled_servers": ["odd"], "server_configs": {"odd": unknown}}
    )
    assert placeholder["code"] == 4007, placeholder
    assert "unsupported placeholder(s) workspace" in placeholder["message"], placeholder

    # A preprocess step that fails (after printing plenty) fails the create, naming its output.
    task = Path(mcp_config["task_dir"])
    (task / "preprocess" / "main.py").write_text(
        "import sys\nprint('x' * 200000)\nprint('no data for this task')\nsys.exit(2)\n"
    )
    third = Sandbox(new_sandbox_id("mcp"), client=client, task_queue=queue)
    failed = await third.create_session("mcp", {**mcp_config, "enabled_servers": ["echo"]})
    assert failed["code"] == 4007, failed
    assert "failed (2)" in failed["message"] and "no data for this task" in failed["message"]


async def test_over_http_and_through_the_mcp_server_front(
    client: Client, address: str, worker: WorkerProcess
) -> None:
    """AgentFlow's HTTP requests make and drive the session; the MCP server front (``cli
    mcp``, stdio) calls the same session's servers by its sandbox id."""
    import aiohttp
    from mcp import Client as McpClient

    from http_api.app import Limits, create_app
    from http_api.server import HttpService
    from tests import agentflow_requests as af
    from tests.test_mcp import _stdio

    w = new_sandbox_id("mcp-http")
    inline = {
        name: yaml.safe_load(SERVER_FILES[f"{name}.yaml"]) for name in ("filesystem", "memory")
    }
    config = {"enabled_servers": ["filesystem", "memory"], "server_configs": inline}
    service = HttpService(create_app(client=client, limits=Limits()), "127.0.0.1", 0)
    url = await service.start()
    try:
        async with aiohttp.ClientSession() as http:

            async def call(request: af.Call, status: int = 200) -> Any:
                async with http.request(
                    request.method, url + request.path, json=request.body, headers=af.headers(w)
                ) as response:
                    assert response.status == status, await response.text()
                    return await response.json(content_type=None)

            created = await call(af.create_session(w, "mcp", config))
            assert created["code"] == 0, created
            wrote = await call(
                af.execute(
                    w,
                    "mcp:call",
                    {
                        "tool": "filesystem.write_file",
                        "arguments": {"path": "/workspace/via-http.txt", "content": "over http"},
                    },
                )  # fmt: skip
            )
            assert "Successfully wrote" in _text(wrote)

            # The listing, with the sandbox named: the session's servers' tools and schemas.
            async with http.get(url + "/api/v1/tools", headers=af.headers(w)) as response:
                listed = {t["full_name"]: t for t in (await response.json())["tools"]}
            assert "mcp:call" in listed and "bash:run" in listed, sorted(listed)
            entity = listed["mcp:memory.create_entities"]
            assert entity["params_schema"]["required"] == ["entities"], entity
            assert "mcp:filesystem.read_text_file" in listed, sorted(listed)
            one = af.get_tool_schema("mcp:memory.create_entities")
            async with http.get(url + one.path, headers=af.headers(w)) as response:
                schema = await response.json()
            assert response.status == 200 and schema["full_name"] == one.path.split("/")[-2]
            assert schema["params_schema"]["required"] == ["entities"], schema
            async with http.get(url + "/api/v1/tools", headers=af.headers("nobody")) as response:
                plain = {t["full_name"] for t in (await response.json())["tools"]}
            assert "mcp:memory.create_entities" not in plain

            front_params = _stdio(address)
            front_params.args += ["--sandbox-id", w]
            async with McpClient(front_params) as front:
                tools = {t.name: t for t in (await front.list_tools()).tools}
                assert "mcp_call" in tools, sorted(tools)
                # The front lists its sandbox's servers' tools, and calls them by that name.
                assert "mcp_memory.read_graph" in tools, sorted(tools)
                schema = tools["mcp_memory.create_entities"].input_schema
                assert "entities" in schema["properties"], schema
                empty = await front.call_tool("mcp_memory.read_graph", {})
                assert empty.structured_content is not None
                assert empty.structured_content["code"] == 0, empty.structured_content
                result = await front.call_tool(
                    "mcp_call",
                    {"sandbox_id": w, "tool": "filesystem.read_text_file",
                     "arguments": {"path": "/workspace/via-http.txt"}},
                )  # fmt: skip
                answer = result.structured_content
                assert answer is not None and answer["code"] == 0, answer
                assert _text(answer) == "over http"
                stored = await front.call_tool(
                    "mcp_call",
                    {"sandbox_id": w, "tool": "memory.create_entities",
                     "arguments": {"entities": [{"name": "Grace", "entityType": "person",
                                                 "observations": ["compilers"]}]}},
                )  # fmt: skip
                assert stored.structured_content is not None
                assert stored.structured_content["code"] == 0, stored.structured_content

            # AgentFlow's name, the server's own schema: a task's kwarg is dropped and named.
            graph = await call(af.execute(w, "mcp:memory.read_graph", {"seed_path": "x"}))
            assert [e["name"] for e in json.loads(_text(graph))["entities"]] == ["Grace"]
            assert graph["meta"]["tool"] == "mcp:memory.read_graph", graph["meta"]
            assert graph["meta"]["ignored_params"] == ["seed_path"], graph["meta"]
            wrong = await call(af.execute(w, "mcp:memory.create_entities", {"entities": "x"}), 400)
            assert wrong["code"] == 4004, wrong
            missing = await call(af.execute(w, "mcp:memory.no_such_tool"), 400)
            assert missing["code"] == 4002, missing
            destroyed = await call(af.destroy_session(w, "mcp"))
            assert destroyed["code"] == 0, destroyed
    finally:
        await service.stop()
