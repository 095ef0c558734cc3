"""The HTTP API against issue 23's attacks, on a real server and worker: a key-less server reads
no owned session it would not let you execute on; a key's session quota holds under concurrent
creates; a batch counts each of its actions for the rate limiter; out-of-range and malformed
inputs answer a clear 4xx envelope and change nothing; an oversized body gets its 413 even from
a client that sends the whole body before reading (no connection reset)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from temporalio.client import Client

from client import Sandbox
from http_api.app import Limits, create_app
from http_api.keys import KeyStore, new_key, parse_lines
from http_api.server import HttpService
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess
from tests.test_http_api import Api


@pytest.fixture(scope="module")
async def keyed(client: Client, worker: WorkerProcess) -> AsyncIterator[Api]:
    """A server with keys: ``three`` may hold 3 sessions, ``batcher`` 1 request in 10 s in
    bursts of 5, ``alice`` the defaults."""
    keys: dict[str, str] = {}
    lines = []
    options: dict[str, dict[str, Any]] = {
        "alice": {},
        "three": {"max_sessions": 3},
        "batcher": {"rate": 0.1, "burst": 5},
    }
    for user, opts in options.items():
        keys[user], line = new_key(user, **opts)
        lines.append(line)
    store = KeyStore(parse_lines("\n".join(lines), where="test keys"))
    service = HttpService(create_app(client=client, keys=store, limits=Limits()), "127.0.0.1", 0)
    url = await service.start()
    async with aiohttp.ClientSession() as http:
        yield Api(url, keys, http)
    await service.stop()


@pytest.fixture
async def keyless(client: Client, worker: WorkerProcess, tmp_path: Path) -> AsyncIterator[Api]:
    """A server with no keys (every local caller trusted), reading configs under tmp_path."""
    app = create_app(client=client, keys=KeyStore(), config_dir=tmp_path)
    service = HttpService(app, "127.0.0.1", 0)
    url = await service.start()
    async with aiohttp.ClientSession() as http:
        yield Api(url, {}, http)
    await service.stop()


def _post(path: str, body: dict[str, Any]) -> af.Call:
    return af.Call("POST", path, body)


async def test_a_keyless_server_reads_no_owned_session(keyless: Api, client: Client) -> None:
    w = new_sandbox_id("bobs")
    bob = Sandbox(w, client=client, user_id="bob")
    assert (await bob.create_session("testkit"))["status"] == "success"
    await bob.execute("testkit:pid", {})
    try:
        # Executing is refused (the session's own check) ...
        status, body, _ = await keyless.call(af.execute(w, "testkit:pid"), None, w)
        assert (status, body["code"]) == (403, 4012), body
        # ... and so is every read of it: the same answer, nothing of bob's session in it.
        for path in ("/api/v1/session/describe", "/api/v1/session/events"):
            call = _post(path, {"worker_id": w, "resource_type": "testkit"})
            status, body, _ = await keyless.call(call, None, w)
            assert (status, body["code"]) == (403, 4012), (path, body)
            assert "permission denied" in body["message"] and body["data"] is None
        status, body, _ = await keyless.call(af.list_sessions(w), None, w)
        assert status == 200 and body["data"]["sessions"] == [], body
        status, body, _ = await keyless.call(af.heartbeat(w), None, w)
        assert status == 200 and body["data"]["active_sessions"] == []
        status, body, _ = await keyless.call(af.get_status(w), None, w)
        assert status == 200 and body["data"]["active_resources"] == [], body
        assert body["data"]["sessions"] == {}
    finally:
        await bob.destroy_session("testkit")

    # A session with no owner is the key-less caller's to read, as to use.
    mine = new_sandbox_id("nobody")
    status, body, _ = await keyless.call(af.create_session(mine, "testkit"), None, mine)
    assert status == 200, body
    call = _post("/api/v1/session/describe", {"worker_id": mine, "resource_type": "testkit"})
    status, body, _ = await keyless.call(call, None, mine)
    assert status == 200 and body["data"]["session"]["user_id"] is None
    call = _post("/api/v1/session/events", {"worker_id": mine, "resource_type": "testkit"})
    status, body, _ = await keyless.call(call, None, mine)
    assert status == 200 and body["data"]["events"], body
    await keyless.call(af.destroy_session(mine, "testkit"), None, mine)


async def test_the_session_quota_holds_under_concurrent_creates(keyed: Api) -> None:
    # A slow initialize keeps all eight creations in flight at once.
    workers = [new_sandbox_id("race") for _ in range(8)]
    answers = await asyncio.gather(
        *(
            keyed.call(af.create_session(w, "testkit", {"init_delay": 0.5}), "three", w)
            for w in workers
        )
    )
    made = [w for w, (status, _, _) in zip(workers, answers, strict=True) if status == 200]
    refused = [body for status, body, _ in answers if status == 429]
    try:
        assert len(made) == 3, [(s, b["code"], b["message"]) for s, b, _ in answers]
        assert len(refused) == 5 and all(b["code"] == 4013 for b in refused)
        assert "(3)" in refused[0]["message"]
    finally:
        for w in made:
            await keyed.call(af.destroy_session(w, "testkit"), "three", w)

    # A creation that fails holds no place: three failures, then three sessions.
    for _ in range(3):
        bad = new_sandbox_id("bad")
        call = af.create_session(bad, "bash", {"cwd": "/no/such/dir"})
        status, body, _ = await keyed.call(call, "three", bad)
        assert (status, body["code"]) == (500, 4007), body
    again = [new_sandbox_id("again") for _ in range(3)]
    try:
        for w in again:
            status, body, _ = await keyed.call(af.create_session(w, "testkit"), "three", w)
            assert status == 200, body
    finally:
        for w in again:
            await keyed.call(af.destroy_session(w, "testkit"), "three", w)


async def test_a_batch_counts_each_action_for_the_rate_limit(keyed: Api) -> None:
    w = new_sandbox_id("batch")
    ping = {"action": "tally:ping", "params": {"value": "x"}}
    # batcher: 1 request in 10 s, bursts of 5. Six actions can never fit in one go.
    status, body, headers = await keyed.call(af.execute_batch(w, [ping] * 6), "batcher", w)
    assert (status, body["code"]) == (429, 4013), body
    assert "6 actions" in body["message"] and "5" in body["message"]
    assert body["data"]["actions"] == 6 and "Retry-After" not in headers
    # Three fit (with the refused request's token gone, four were left) ...
    status, body, _ = await keyed.call(af.execute_batch(w, [ping] * 3), "batcher", w)
    assert status == 200 and body["data"]["success_count"] == 3, body
    # ... and the next three do not, until the bucket refills.
    status, body, headers = await keyed.call(af.execute_batch(w, [ping] * 3), "batcher", w)
    assert (status, body["code"]) == (429, 4013), body
    assert "3 actions" in body["message"] and int(headers["Retry-After"]) >= 1


async def test_an_out_of_range_ttl_answers_400_and_changes_nothing(keyed: Api) -> None:
    w = new_sandbox_id("ttl")
    status, body, _ = await keyed.call(af.create_session(w, "testkit"), "alice", w)
    assert status == 200, body
    before = {k: body["data"]["session"][k] for k in ("deadline", "ttl_seconds")}
    try:
        for ttl in (-1, 0, 1e300, 30 * 86400 + 1):
            call = _post(
                "/api/v1/session/refresh", {"worker_id": w, "resource_type": "testkit", "ttl": ttl}
            )
            status, body, _ = await keyed.call(call, "alice", w)
            assert (status, body["code"]) == (400, 4000), (ttl, body)
            assert "ttl" in body["message"] and "2592000" in body["message"], body
        # A huge number in the JSON text (read as infinity) is out of range too.
        raw = json.dumps({"worker_id": w, "resource_type": "testkit"})[:-1] + ', "ttl": 1e999}'
        async with keyed.http.post(
            keyed.url + "/api/v1/session/refresh",
            data=raw,
            headers=af.headers(w, keyed.keys["alice"]),
        ) as response:
            answer = await response.json()
            assert (response.status, answer["code"]) == (400, 4000), answer
        call = _post("/api/v1/session/describe", {"worker_id": w, "resource_type": "testkit"})
        status, body, _ = await keyed.call(call, "alice", w)
        assert {k: body["data"]["session"][k] for k in before} == before  # unchanged
        # A creation with one makes nothing.
        other = new_sandbox_id("ttl")
        call = af.create_session(other, "testkit")
        assert call.body is not None
        call.body["ttl"] = -5
        status, body, _ = await keyed.call(call, "alice", other)
        assert (status, body["code"]) == (400, 4000), body
        status, body, _ = await keyed.call(af.list_sessions(other), "alice", other)
        assert body["data"]["sessions"] == []
    finally:
        await keyed.call(af.destroy_session(w, "testkit"), "alice", w)


async def test_a_nul_in_a_config_path_answers_400(keyless: Api, tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text(json.dumps({"bash": {"cwd": "/tmp"}}))
    call = _post("/api/v1/init/from-config", {"config_path": "ok.json"})
    status, body, _ = await keyless.call(call, None)
    assert status == 200 and body["data"]["config"] == {"bash": {"cwd": "/tmp"}}, body
    for path in ("ok\x00.json", "\x00", "ok.json\x00../../etc/passwd"):
        call = _post("/api/v1/init/from-config", {"config_path": path})
        status, body, _ = await keyless.call(call, None)
        assert (status, body["code"]) == (400, 4000), (path, body)
        assert "config_path" in body["message"], body


def send_whole_body(url: str, data: bytes, headers: dict[str, str], attempts: int = 3) -> list[Any]:
    """POST ``data`` as urllib does (the whole body, then the answer), ``attempts`` times:
    each answer's (status, body), or the error that replaced it."""
    seen: list[Any] = []
    for _ in range(attempts):
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                seen.append((response.status, response.read()))
        except urllib.error.HTTPError as exc:
            seen.append((exc.code, exc.read()))
        except OSError as exc:
            seen.append(repr(exc))
    return seen


async def test_an_oversized_body_gets_its_413_not_a_reset(keyed: Api) -> None:
    body = json.dumps({"worker_id": "w", "action": "bash:run", "params": {"x": "a" * 5_000_000}})
    seen = await asyncio.to_thread(
        send_whole_body, keyed.url + "/api/v1/execute", body.encode(), af.headers("w")
    )
    for answer in seen:
        assert isinstance(answer, tuple) and answer[0] == 413, seen
        assert json.loads(answer[1])["code"] == 4009
