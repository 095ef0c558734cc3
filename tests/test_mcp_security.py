"""`durable-sessions mcp` against issue 23's attacks, with real server processes: without a
user it reads no owned session; over HTTP it refuses to listen beyond loopback without a token,
asks for the token, keeps DNS-rebinding protection on (Host and Origin checked), and answers an
oversized body with 413 and a message instead of a connection reset."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from temporalio.client import Client as TemporalClient

from client import Sandbox
from tests.conftest import new_sandbox_id
from tests.devserver import free_port
from tests.processes import ROOT, WorkerProcess, run_cli, wait_listening
from tests.test_http_hardening import send_whole_body
from tests.test_mcp import _read, _run, _stdio

TOKEN_ENV = "DURABLE_SESSIONS_MCP_TOKEN"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@asynccontextmanager
async def _mcp_http(
    address: str, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[int]:
    """`mcp --transport http ARGS` on a free port until the block ends; yields the port."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "mcp", "--transport", "http", "--port", str(port),
        "--address", address, *args,
        cwd=str(ROOT), env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_listening(proc, port, "the MCP server")
        yield port
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def bobs_session(client: TemporalClient, worker: WorkerProcess) -> AsyncIterator[str]:
    """A bash session owned by bob (made with the Python client); its sandbox id."""
    sandbox_id = new_sandbox_id("bob")
    bob = Sandbox(sandbox_id, client=client, user_id="bob")
    assert (await bob.create_session("bash"))["status"] == "success"
    await bob.execute("bash:run", {"command": "export SECRET=bobs"})
    assert (await bob.describe_session("bash") or {}).get("user_id") == "bob"
    yield sandbox_id
    await bob.destroy_session("bash")


async def test_without_a_user_mcp_reads_no_owned_session(address: str, bobs_session: str) -> None:
    async with Client(_stdio(address)) as mcp:
        for what in ("describe", "events"):
            with pytest.raises(Exception, match="permission denied") as refused:
                await mcp.read_resource(f"sandbox://{bobs_session}/bash/{what}")
            assert "bobs" not in str(refused.value)
        # Calling a tool there is refused too (the session's own check).
        result = await mcp.call_tool("bash_run", {"command": "id", "sandbox_id": bobs_session})
        assert result.is_error and (result.structured_content or {})["code"] == 4012
        # Its own sessions (no owner) it reads, as before.
        mine = await _run(mcp, "true")
        view = await _read(mcp, f"sandbox://{mine['sandbox_id']}/bash/describe")
        assert view["user_id"] is None
    # With bob's user id, bob's session is readable.
    as_bob = _stdio(address)
    as_bob.args = [*as_bob.args, "--user-id", "bob"]
    async with Client(as_bob) as mcp:
        view = await _read(mcp, f"sandbox://{bobs_session}/bash/describe")
        assert view["user_id"] == "bob"
        events = await _read(mcp, f"sandbox://{bobs_session}/bash/events")
        assert events["events"]


async def test_http_beyond_loopback_needs_a_token(address: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    code, out = await run_cli(
        "mcp", "--transport", "http", "--host", "0.0.0.0", "--port", str(free_port()),
        "--address", address, env=env, timeout=30,
    )  # fmt: skip
    assert code != 0 and TOKEN_ENV in out and "--token" in out, out
    assert "Traceback" not in out


async def _post(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **(headers or {})}) as r:
        return r.status, await r.text()


async def test_http_with_a_token_checks_it_and_hosts_and_origins(
    address: str, worker: WorkerProcess
) -> None:
    token = "t0ken-" + new_sandbox_id()
    args = ("--host", "0.0.0.0", "--allowed-host", "mcp.example.test")
    async with _mcp_http(address, *args, env={TOKEN_ENV: token}) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            status, text = await _post(http, url)
            assert status == 401 and "token" in text, text
            status, text = await _post(http, url, {"Authorization": "Bearer wrong"})
            assert status == 401, text
            # DNS rebinding: a page of evil.example whose name now points here.
            status, text = await _post(http, url, {**auth, "Host": "evil.example"})
            assert status == 421, text
            status, text = await _post(http, url, {**auth, "Host": f"evil.example:{port}"})
            assert status == 421, text
            status, text = await _post(http, url, {**auth, "Origin": "http://evil.example"})
            assert status == 403, text
            # The bound address and an added host are allowed.
            status, text = await _post(http, url, auth)
            assert status == 200, text
            status, text = await _post(http, url, {**auth, "Host": f"mcp.example.test:{port}"})
            assert status == 200, text
        # The mcp package's own client, with the token.
        async with (
            httpx2.AsyncClient(headers=auth) as session,
            Client(streamable_http_client(url, http_client=session)) as mcp,
        ):
            answer = await _run(mcp, "echo hi")
            assert answer["data"]["stdout"] == "hi\n"


async def test_http_answers_an_oversized_body_with_413(address: str) -> None:
    body = json.dumps({**INITIALIZE, "params": {"x": "a" * 5_000_000}}).encode()
    async with _mcp_http(address) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        seen = await asyncio.to_thread(send_whole_body, url, body, MCP_HEADERS)
        for answer in seen:
            assert isinstance(answer, tuple) and answer[0] == 413, seen
            error = json.loads(answer[1])["error"]
            assert "too large" in error["message"] and "4194304" in error["message"], error
        # The server still answers.
        async with aiohttp.ClientSession() as http:
            status, _ = await _post(http, url)
            assert status == 200
