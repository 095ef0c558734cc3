"""`durable-sessions mcp`, driven by the mcp package's own client over stdio and streamable HTTP:
it lists the tools with their schemas, runs `bash:run` on a durable session, exposes the
session's view and events, and a second connection naming the same sandbox_id sees the same
shell."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.devserver import free_port
from tests.processes import WorkerProcess, wait_listening

ROOT = Path(__file__).resolve().parent.parent


def _stdio(address: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "cli", "mcp", "--address", address],
        cwd=str(ROOT),
        env=dict(os.environ),  # the payload store and keys the test's workers use
    )


async def _run(client: Client, command: str, **extra: Any) -> dict[str, Any]:
    result = await client.call_tool("bash_run", {"command": command, **extra})
    assert not result.is_error, result
    answer = result.structured_content
    assert answer is not None and answer["code"] == 0, answer
    return answer


async def _read(client: Client, uri: str) -> Any:
    contents = (await client.read_resource(uri)).contents
    return json.loads(contents[0].text)  # type: ignore[union-attr]


@pytest.fixture
async def http_server(address: str) -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "mcp", "--transport", "http", "--port", str(port),
        "--address", address, cwd=str(ROOT),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_listening(proc, port, "the MCP server")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_stdio_lists_tools_runs_bash_and_shares_a_sandbox(
    address: str, worker: WorkerProcess, http_server: str
) -> None:
    async with Client(_stdio(address)) as first:
        tools = {t.name: t for t in (await first.list_tools()).tools}
        assert {"bash_run", "code_execute", "rag_search"} <= set(tools)
        schema = tools["bash_run"].input_schema
        assert schema["required"] == ["command"]
        assert {"command", "timeout", "sandbox_id"} <= set(schema["properties"])
        made = await _run(first, "mkdir -p /tmp/mcp && cd /tmp/mcp && export GREETING=hi")
        sandbox_id = made["sandbox_id"]
        again = await _run(first, "echo $GREETING")  # the connection's own session
        assert again["sandbox_id"] == sandbox_id and again["data"]["stdout"] == "hi\n"
        templates = {
            t.uri_template for t in (await first.list_resource_templates()).resource_templates
        }
        assert "sandbox://{sandbox_id}/{resource_type}/describe" in templates
        view = await _read(first, f"sandbox://{sandbox_id}/bash/describe")
        assert view["workflow_id"] == f"{sandbox_id}:bash" and view["call_count"] == 2
        events = await _read(first, f"sandbox://{sandbox_id}/bash/events")
        assert [e["kind"] for e in events["events"]].count("execute") == 2

    # Another stdio connection (a new server process) has a sandbox of its own, unless it
    # names this one; so does a streamable HTTP connection.
    async with Client(_stdio(address)) as second:
        assert (await _run(second, "pwd"))["sandbox_id"] != sandbox_id
        shared = await _run(second, "pwd; echo $GREETING", sandbox_id=sandbox_id)
        assert shared["data"]["stdout"] == "/tmp/mcp\nhi\n"
    async with Client(http_server) as over_http:
        shared = await _run(over_http, "pwd", sandbox_id=sandbox_id)
        assert shared["data"]["stdout"] == "/tmp/mcp\n"


async def test_http_session_keeps_its_shell(worker: WorkerProcess, http_server: str) -> None:
    # A client of the handshake era has an Mcp-Session-Id: its calls share one sandbox.
    async with Client(http_server, mode="legacy") as client:
        first = await _run(client, "cd /tmp")
        second = await _run(client, "pwd")
        assert second["sandbox_id"] == first["sandbox_id"]
        assert second["data"]["stdout"] == "/tmp\n"
        unknown = await client.call_tool("nope_nothing", {})
        assert unknown.is_error
