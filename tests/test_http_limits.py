"""The HTTP API's limits on a real server: `durable-sessions http` started with its limit flags
and a keys file. Each key has its own requests-a-second bucket and session count; a key with no
options gets the server's flags; a key's options in the keys file win over them; past a limit the
answer is 429 (4013) with Retry-After."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from http_api.keys import new_key
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.devserver import free_port
from tests.processes import ROOT, WorkerProcess, wait_listening

#: The server's limits for keys that set none: a request every 10 s, bursts of 3, one session.
#: Slow rates, so that no bucket refills while a test sends its requests on a loaded machine.
FLAGS = ["--rate", "0.1", "--burst", "3", "--max-sessions", "1"]
#: Per key: its options in the keys file (none: the server's flags).
KEYS: dict[str, dict[str, Any]] = {
    "plain": {},
    "other": {},
    "solo": {},
    "fast": {"rate": 0.5, "burst": 10},
    "slow": {"rate": 0.05, "burst": 1},
    "roomy": {"max_sessions": 2, "burst": 10},
}


class Api:
    def __init__(self, url: str, keys: dict[str, str], http: aiohttp.ClientSession) -> None:
        self.url, self.keys, self.http = url, keys, http

    async def call(self, user: str, call: af.Call, worker_id: str = "w") -> tuple[int, Any, Any]:
        sent = af.headers(worker_id, self.keys[user])
        async with self.http.request(
            call.method, self.url + call.path, json=call.body, headers=sent
        ) as response:
            return response.status, await response.json(content_type=None), response.headers

    async def statuses(self, user: str, times: int) -> list[int]:
        """``times`` cheap requests in a row (a keyed route that reads nothing of the caller)."""
        return [(await self.call(user, af.warmup_status()))[0] for _ in range(times)]


@pytest.fixture(scope="module")
async def api(address: str, worker: WorkerProcess, tmp_path_factory: Any) -> AsyncIterator[Api]:
    keys, lines = {}, []
    for user, options in KEYS.items():
        # User ids of this module's own: the session count is per user on a shared server.
        keys[user], line = new_key(f"limits-{user}", **options)
        lines.append(line)
    keys_file = Path(tmp_path_factory.mktemp("keys")) / "keys"
    keys_file.write_text("\n".join(lines) + "\n")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "http", "--address", address, "--port", str(port),
        "--keys-file", str(keys_file), *FLAGS, cwd=str(ROOT),
        env={**os.environ, "LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_listening(proc, port, "durable-sessions http")
        async with aiohttp.ClientSession() as http:
            yield Api(f"http://127.0.0.1:{port}", keys, http)
    finally:
        proc.terminate()
        await proc.wait()


async def test_request_rates_are_per_key_with_the_keys_file_overriding_the_flags(
    api: Api,
) -> None:
    # A key without options: the server's burst of 3, then 429 with Retry-After.
    assert await api.statuses("plain", 3) == [200, 200, 200]
    status, body, headers = await api.call("plain", af.warmup_status())
    assert (status, body["code"]) == (429, 4013), body
    assert body["data"] == {"rate": 0.1, "burst": 3}
    assert 1 <= int(headers["Retry-After"]) <= 10
    # Another key is not charged for the first one's requests.
    assert await api.statuses("other", 3) == [200, 200, 200]
    # A key's own rate and burst win over the flags, above them...
    assert await api.statuses("fast", 10) == [200] * 10
    status, body, _ = await api.call("fast", af.warmup_status())
    assert status == 429 and body["data"] == {"rate": 0.5, "burst": 10}
    # ... and below them: one request, then a wait of 1 / 0.05 = 20 s.
    assert await api.statuses("slow", 1) == [200]
    status, body, headers = await api.call("slow", af.warmup_status())
    assert status == 429 and "0.05 requests a second" in body["message"]
    assert 10 < int(headers["Retry-After"]) <= 20


async def test_live_sessions_are_counted_per_key_with_the_keys_file_overriding_the_flag(
    api: Api,
) -> None:
    made: list[tuple[str, str]] = []
    try:
        # The flag's one session for a key without options (another key's do not count).
        # (solo's three requests, two creates and a destroy, fit the flags' burst of 3.)
        for user, allowed in (("solo", 1), ("roomy", 2)):
            for n in range(allowed):
                sandbox = new_sandbox_id(f"{user}{n}")
                status, body, _ = await api.call(user, af.create_session(sandbox, "testkit"))
                assert status == 200, body
                made.append((user, sandbox))
            over = new_sandbox_id(f"{user}-over")
            status, body, headers = await api.call(user, af.create_session(over, "testkit"), over)
            assert (status, body["code"]) == (429, 4013), body
            assert body["data"] == {"limit": allowed, "live_sessions": allowed}
            assert int(headers["Retry-After"]) >= 1
    finally:
        for user, sandbox in made:
            await api.call(user, af.destroy_session(sandbox, "testkit"), sandbox)
