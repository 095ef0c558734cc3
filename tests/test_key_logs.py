"""Our HTTP server never logs an API key, in any form a caller sends it (issue 25, item 7): the
`durable-sessions http` command at DEBUG level, with every line it writes (ours, uvicorn's, the
SDK's) captured, is sent a key as a Bearer header, as `X-API-Key`, as URL userinfo (HTTP Basic:
what AgentFlow's unchanged client sends for `http://alice:KEY@host`), in a query string (not a
way to send one: 401, and still not logged), as a wrong key, and with a bad body; the key, its
Basic encoding and the wrong key appear nowhere in the output."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client import Sandbox
from http_api.keys import new_key
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.devserver import free_port
from tests.processes import ROOT, WorkerProcess


async def _read_all(stream: asyncio.StreamReader, into: list[str]) -> None:
    while line := await stream.readline():
        into.append(line.decode(errors="replace"))


async def test_the_http_server_logs_no_key_in_any_form(
    address: str, worker: WorkerProcess, tmp_path: Path
) -> None:
    key, line = new_key("alice")
    keys_file = tmp_path / "keys"
    keys_file.write_text(line + "\n")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_SESSIONS_API_KEYS")}
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "http", "--address", address, "--port", str(port),
        "--keys-file", str(keys_file),
        cwd=str(ROOT), env={**env, "LOG_LEVEL": "DEBUG"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    output: list[str] = []
    while not output or "HTTP API" not in output[-1]:
        read = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert read, "".join(output)
        output.append(read)
    reader = asyncio.create_task(_read_all(proc.stdout, output))
    base = f"http://127.0.0.1:{port}"
    worker_id = new_sandbox_id("keys")
    statuses: dict[str, int] = {}

    async def send(
        name: str, call: af.Call, *, url: str = base, headers: dict[str, str] | None = None
    ) -> Any:
        sent = {"Content-Type": "application/json", "X-Worker-ID": worker_id, **(headers or {})}
        async with (
            aiohttp.ClientSession() as http,
            http.request(call.method, url + call.path, json=call.body, headers=sent) as response,
        ):
            statuses[name] = response.status
            return await response.json(content_type=None)

    try:
        bearer = {"Authorization": f"Bearer {key}"}
        made = await send("create", af.create_session(worker_id, "bash"), headers=bearer)
        assert made["code"] == 0, made
        ran = await send("bearer", af.execute(worker_id, "bash:run", {"command": "echo hi"}),
                         headers=bearer)  # fmt: skip
        assert ran["code"] == 0 and ran["data"]["stdout"] == "hi\n", ran
        # AgentFlow's client, unchanged: server_url="http://alice:KEY@host:port" (HTTP Basic).
        userinfo = f"http://alice:{key}@127.0.0.1:{port}"
        basic = await send("basic", af.execute(worker_id, "bash:run", {"command": "pwd"}),
                           url=userinfo)  # fmt: skip
        assert basic["code"] == 0, basic
        await send("x-api-key", af.list_sessions(worker_id), headers={"X-API-Key": key})
        # Not ways to send a key: refused, and not logged either.
        for name in ("api_key", "key", "token"):
            query = af.Call("POST", f"/api/v1/session/list?{name}={key}", {"worker_id": worker_id})
            await send(f"query {name}", query)
        await send(
            "wrong", af.list_sessions(worker_id), headers={"Authorization": f"Bearer {wrong}"}
        )
        bad_body = af.Call("POST", "/api/v1/execute", {"worker_id": worker_id, "params": "no"})
        await send("bad body", bad_body, headers=bearer)
        await send("destroy", af.destroy_session(worker_id, "bash"), headers=bearer)
        # Our Python client: api_key= goes as a header; a key in the URL is taken from it too.
        for sandbox in (
            Sandbox(server_url=base, api_key=key, worker_id=worker_id),
            Sandbox(server_url=userinfo, worker_id=worker_id),
        ):
            async with sandbox:
                ours = await sandbox.execute("bash:run", {"command": "echo ours"})
                assert ours["code"] == 0 and ours["data"]["stdout"] == "ours\n", ours
            assert sandbox.server_url == base
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
        await asyncio.wait_for(reader, 10)
    assert statuses == {
        "create": 200, "bearer": 200, "basic": 200, "x-api-key": 200, "query api_key": 401,
        "query key": 401, "query token": 401, "wrong": 401, "bad body": 422, "destroy": 200,
    }, statuses  # fmt: skip
    text = "".join(output)
    assert "DEBUG" in text, text[-2000:]  # the server did log, at DEBUG level
    encoded = base64.b64encode(f"alice:{key}".encode()).decode()
    for secret in (key, wrong, encoded, key[:16], key[-16:]):
        leaked = [line for line in text.splitlines() if secret in line]
        assert not leaked, f"a key in the server's log: {leaked[:3]}"


async def test_our_client_moves_a_key_in_the_url_to_a_header_and_shows_it_nowhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = "k" + uuid.uuid4().hex
    url = f"http://alice:{key}@127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.DEBUG)
    sandbox = Sandbox(server_url=url, worker_id="w-keys", retry_count=1)
    assert sandbox.server_url is not None and key not in sandbox.server_url
    with pytest.raises(ConnectionError) as raised:
        await sandbox.start()
    await sandbox.close()
    assert "127.0.0.1" in str(raised.value), raised.value
    shown = [str(raised.value), repr(raised.value), caplog.text, repr(vars(sandbox))]
    assert not [text for text in shown if key in text], shown
