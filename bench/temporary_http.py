"""Temporary calls over the HTTP API (no session: each call starts its instance, or takes a
ready one, and ends it): ``code:execute`` beside ``bash:run``, one after another, interleaved.
Target (issue 28): a temporary ``code:execute`` within 2x a temporary ``bash:run`` at p50."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp

from bench.measure import stats

CALLS = {
    "bash:run": {"command": "echo hi"},
    "code:execute": {"code": "1 + 1"},
}
TARGET = 2.0


async def temporary_http(url: str, key: str, samples: int) -> dict[str, Any]:
    worker_id = f"bench-tmp-{uuid.uuid4().hex[:8]}"  # a sandbox with no session: temporary
    taken: dict[str, list[float]] = {action: [] for action in CALLS}
    errors = 0
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as web:

        async def call(action: str) -> float:
            nonlocal errors
            body = {"worker_id": worker_id, "action": action, "params": CALLS[action]}
            started = time.perf_counter()
            async with web.post(f"{url}/api/v1/execute", json=body) as response:
                answer = await response.json()
            took = (time.perf_counter() - started) * 1000
            errors += answer.get("code") != 0
            return took

        for action in CALLS:  # warm: the backends, connections, the ready pools
            for _ in range(5):
                await call(action)
        for i in range(samples):
            order = list(CALLS) if i % 2 == 0 else list(reversed(CALLS))
            for action in order:
                taken[action].append(await call(action))
    bash, code = stats(taken["bash:run"]), stats(taken["code:execute"])
    ratio = round(code["p50_ms"] / bash["p50_ms"], 2)
    return {
        "bash:run": bash,
        "code:execute": code,
        "ratio_p50": ratio,
        "target": TARGET,
        "met": ratio <= TARGET and errors == 0,
        "errors": errors,
    }
