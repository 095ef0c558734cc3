"""Live output over HTTP: a streaming execute answers its output as server-sent events while the
command runs, then the envelope; a watcher from an offset sees a session's streaming calls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from temporalio.client import Client

from http_api.app import Limits, create_app
from http_api.server import HttpService
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess


@pytest.fixture
async def url(client: Client, worker: WorkerProcess) -> AsyncIterator[str]:
    service = HttpService(create_app(client=client, limits=Limits()), "127.0.0.1", 0)
    yield await service.start()
    await service.stop()


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event, data) of each server-sent event, as it arrives."""
    kind = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            yield kind, json.loads(line[len("data: ") :])


async def test_a_streaming_execute_sends_output_as_it_runs_then_the_envelope(url: str) -> None:
    w = new_sandbox_id("sse")
    async with aiohttp.ClientSession(headers=af.headers(w)) as http:
        create = af.create_session(w, "bash")
        async with http.post(url + create.path, json=create.body) as response:
            assert (await response.json())["code"] == 0
        command = "for i in 1 2 3; do echo line-$i; sleep 0.4; done"
        body = {"worker_id": w, "action": "bash:run", "params": {"command": command}}
        started = time.monotonic()
        seen: list[tuple[float, str, dict[str, Any]]] = []
        async with http.post(url + "/api/v1/execute/stream", json=body) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for kind, data in _events(response):
                seen.append((time.monotonic() - started, kind, data))
        chunks = [(t, d) for t, k, d in seen if k == "chunk" and d["kind"] == "output"]
        text = "".join(d["text"] for _, d in chunks)
        assert text.split() == ["line-1", "line-2", "line-3"], seen
        # The first line arrived while the command was still running, not with the answer.
        assert chunks[0][0] < seen[-1][0] - 0.5, seen
        last_time, last_kind, envelope = seen[-1]
        assert last_kind == "result" and envelope["code"] == 0, envelope
        assert envelope["data"]["stdout"].split() == ["line-1", "line-2", "line-3"]
        # X-Strict-Params holds here as on execute: an undeclared parameter answers 4000.
        strict = {**body, "params": {"command": "true", "nope": 1}}
        headers = {"X-Strict-Params": "true"}
        async with http.post(url + "/api/v1/execute/stream", json=strict, headers=headers) as r:
            kinds = [(k, d) async for k, d in _events(r)]
        assert [k for k, _ in kinds] == ["result"] and kinds[0][1]["code"] == 4000, kinds
        destroy = af.destroy_session(w, "bash")
        async with http.post(url + destroy.path, json=destroy.body) as response:
            assert response.status == 200


async def test_a_watcher_from_an_offset_sees_a_sessions_streaming_calls(url: str) -> None:
    w = new_sandbox_id("sse-watch")
    async with aiohttp.ClientSession(headers=af.headers(w)) as http:
        create = af.create_session(w, "bash")
        async with http.post(url + create.path, json=create.body) as response:
            assert (await response.json())["code"] == 0
        texts: list[str] = []

        async def watch() -> None:
            body = {"worker_id": w, "resource_type": "bash", "from_offset": 0}
            async with http.post(url + "/api/v1/session/output", json=body) as response:
                assert response.status == 200
                async for kind, data in _events(response):
                    assert kind == "chunk", data
                    texts.append(data["text"])
                    if data["kind"] == "end":
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(1)
        body = {"worker_id": w, "action": "bash:run", "params": {"command": "echo watched"}}
        async with http.post(url + "/api/v1/execute/stream", json=body) as response:
            async for _ in _events(response):
                pass
        await asyncio.wait_for(watcher, 30)
        assert "watched\n" in texts, texts

        past_end: dict[str, Any] = {"worker_id": w, "resource_type": "bash", "from_offset": 10**6}
        async with http.post(url + "/api/v1/session/output", json=past_end) as response:
            events = [e async for e in _events(response)]
        assert events[0][0] == "error" and events[0][1]["code"] == 4000, events
        destroy = af.destroy_session(w, "bash")
        async with http.post(url + destroy.path, json=destroy.body) as response:
            assert response.status == 200
