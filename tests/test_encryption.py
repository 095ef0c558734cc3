"""Encrypted sessions: no plaintext in the server's history, keys rotate, the codec server
lets the CLI (and the UI) read them."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import ClientSession, web
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from cli.codec_server import build_app, ui_origins
from client import Sandbox
from runtime.embedded import temporal_binary
from runtime.encryption import ENCODING, KEY_ID, KEYS_ENV, EncryptionCodec, new_key_entry
from runtime.plugin import SessionsPlugin
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess

SECRET = "s3cr3t-VALUE-" + uuid.uuid4().hex[:8]
KEY_A, KEY_B = new_key_entry("a"), new_key_entry("b")


async def _client(address: str, keys: str) -> Client:
    codec = EncryptionCodec.parse(keys)
    return await Client.connect(address, plugins=[SessionsPlugin(codec=codec)])


async def _worker(address: str, queue: str, keys: str) -> WorkerProcess:
    return await WorkerProcess.start(
        address, env={KEYS_ENV: keys}, args=["--task-queue", queue, "--backends", "bash"]
    )


@asynccontextmanager
async def _session_that_echoed_the_secret(address: str) -> AsyncIterator[Sandbox]:
    """An encrypted bash session, on a worker of its own that has the key, that ran `echo`."""
    queue = f"enc-{uuid.uuid4().hex[:8]}"
    worker = await _worker(address, queue, KEY_A)
    try:
        sandbox = Sandbox(new_sandbox_id(), client=await _client(address, KEY_A), task_queue=queue)
        await sandbox.create_session("bash")
        ran = await sandbox.execute("bash:run", {"command": f"echo {SECRET}"})
        assert ran["code"] == 0 and ran["data"]["stdout"] == f"{SECRET}\n", ran
        yield sandbox
        await sandbox.shutdown_server()
    finally:
        await worker.stop()


async def _raw_events(address: str, workflow_id: str) -> list[HistoryEvent]:
    """The history as the server stores it, read by a client that has no key."""
    plain = await Client.connect(address)
    return list((await plain.get_workflow_handle(workflow_id).fetch_history()).events)


def _encrypted_payloads(message: Message) -> list[Payload]:
    """Every encrypted payload anywhere inside a history event."""
    if isinstance(message, Payload):
        return [message] if message.metadata.get("encoding") == ENCODING else []
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            found += _encrypted_payloads(value)
            continue
        items = value.values() if hasattr(value, "keys") else value  # a map, or a list
        for item in items:
            found += _encrypted_payloads(item)
    return found


async def test_history_on_the_server_holds_no_plaintext_of_params_results_or_failures(
    address: str,
) -> None:
    async with _session_that_echoed_the_secret(address) as sandbox:
        # A failure whose message carries the secret: initialize refuses a missing directory.
        failed = await sandbox.reinitialize("bash", {"cwd": f"/nonexistent/{SECRET}"})
        assert SECRET in str(failed), failed

        events = await _raw_events(address, f"{sandbox.sandbox_id}:bash")
        raw = b"".join(event.SerializeToString() for event in events)
        assert b"bash:run" not in raw  # the tool name is a parameter too
        assert SECRET.encode() not in raw
        assert base64.b64encode(SECRET.encode())[:12] not in raw
        assert b"Encoded failure" in raw  # the failure's message was moved into a payload


async def test_sessions_still_decode_after_a_key_rotation(address: str) -> None:
    queue = f"enc-{uuid.uuid4().hex[:8]}"
    sandbox_id = new_sandbox_id()
    worker = await _worker(address, queue, KEY_A)
    try:
        old = Sandbox(sandbox_id, client=await _client(address, KEY_A), task_queue=queue)
        await old.create_session("bash")
        assert (await old.execute("bash:run", {"command": "echo before"}))["code"] == 0
    finally:
        await worker.stop()

    rotated = f"{KEY_B},{KEY_A}"  # b encrypts from now on; a still decrypts what it wrote
    worker = await _worker(address, queue, rotated)
    try:
        new = Sandbox(sandbox_id, client=await _client(address, rotated), task_queue=queue)
        after = await new.execute("bash:run", {"command": "echo after"})
        assert after["code"] == 0 and after["data"]["stdout"] == "after\n", after
        view = await new.describe_session("bash")
        assert view is not None and view["call_count"] == 2, view

        events = await _raw_events(address, f"{sandbox_id}:bash")
        sealed = [p for event in events for p in _encrypted_payloads(event)]
        assert {p.metadata[KEY_ID] for p in sealed} == {b"a", b"b"}
        opened = await EncryptionCodec.parse(rotated).decode(sealed)
        assert any(b"echo before" in p.data for p in opened)
        assert any(b"echo after" in p.data for p in opened)
        written_with_a = [p for p in sealed if p.metadata[KEY_ID] == b"a"]
        with pytest.raises(ValueError, match="key 'a', which is not in"):
            await EncryptionCodec.parse(KEY_B).decode(written_with_a)
        await new.shutdown_server()
    finally:
        await worker.stop()


def _payload_texts(shown: str) -> str:
    """Every payload's data in ``temporal workflow show --output json``, base64-decoded."""
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, str):
                    texts.append(base64.b64decode(value).decode(errors="replace"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(shown))
    return "\n".join(texts)


@pytest.fixture
async def codec_server() -> AsyncIterator[str]:
    app = build_app(EncryptionCodec.parse(KEY_A), origins=ui_origins(8233), token="t0k")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_codec_server_round_trips_checks_the_token_and_limits_cors(
    codec_server: str,
) -> None:
    plain = Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'"hi"')])
    body = json_format.MessageToJson(plain)
    auth = {"Authorization": "Bearer t0k", "Content-Type": "application/json"}
    async with ClientSession() as http:
        async with http.post(f"{codec_server}/encode", data=body, headers=auth) as r:
            assert r.status == 200
            encoded = await r.text()
        assert "hi" not in base64.b64decode(json.loads(encoded)["payloads"][0]["data"]).decode(
            errors="replace"
        )
        async with http.post(f"{codec_server}/decode", data=encoded, headers=auth) as r:
            assert json_format.Parse(await r.text(), Payloads()) == plain

        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with http.post(f"{codec_server}/decode", data=encoded, headers=headers) as r:
                assert r.status == 401

        ui = {"Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST"}
        async with http.options(f"{codec_server}/decode", headers=ui) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
            assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        other = {**ui, "Origin": "http://evil.example"}
        async with http.options(f"{codec_server}/decode", headers=other) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_the_temporal_cli_reads_an_encrypted_session_through_the_codec_server(
    address: str, codec_server: str
) -> None:
    async with _session_that_echoed_the_secret(address) as sandbox:
        wid = f"{sandbox.sandbox_id}:bash"

        async def show(*extra: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                temporal_binary(),
                "workflow",
                "show",
                "--address",
                address,
                "--workflow-id",
                wid,
                "--output",
                "json",
                *extra,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await proc.communicate()
            assert proc.returncode == 0, out.decode()
            return out.decode()

        assert SECRET not in _payload_texts(await show())
        decoded = await show("--codec-endpoint", codec_server, "--codec-auth", "Bearer t0k")
        assert SECRET in _payload_texts(decoded)
