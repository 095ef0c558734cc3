"""Calls per core of the whole stack at saturation: many sessions calling at once, and the CPU
every process spent (the server, the worker with its jails and shells, the HTTP API when it is in
the path, and the client), through the Python client and through the HTTP API, beside the
floor's update + local activity. Calls per core-second = 1000 / (CPU ms per call, all summed)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from temporalio.client import Client

from bench.floor import FloorWorkflow, new_floor
from bench.procs import created
from bench.throughput import _drive, _round
from client import Sandbox

ECHO = {"command": "echo hi"}


def _per_core(row: dict[str, Any], counted: tuple[str, ...]) -> dict[str, Any]:
    cpu = row["cpu_ms_per_call"]
    total = sum(cpu[who] for who in counted)
    return {
        "calls_per_second": row["calls_per_second"],
        "errors": row["errors"],
        "p50_ms": row.get("p50_ms"),
        "p95_ms": row.get("p95_ms"),
        "cpu_ms_per_call": {who: cpu[who] for who in counted},
        "stack_cpu_ms_per_call": round(total, 2),
        "calls_per_core_second": round(1000 / total, 1) if total else None,
    }


async def per_core(
    client: Client,
    pinned: str,
    pids: dict[str, int],
    http: tuple[str, str] | None,
    *,
    sessions: int = 50,
    calls: int = 20,
) -> dict[str, Any]:
    """``pids``: worker, floor_worker and (with ``http``, the API's url and key) http."""
    floors = await asyncio.gather(*(new_floor(client, pinned) for _ in range(sessions)))
    boxes = [Sandbox(f"bench-core-{uuid.uuid4().hex[:8]}", client=client) for _ in range(sessions)]
    failed: list[str] = []  # creations that failed once (a jail start under load), then retried
    await _each(boxes, lambda sb: _retried(lambda: created(sb, "bash"), failed))

    async def floor(i: int) -> bool:
        await floors[i].execute_update(FloorWorkflow.with_local_activity, "x")
        return True

    async def python(i: int) -> bool:
        return (await boxes[i].execute("bash:run", ECHO))["code"] == 0

    out: dict[str, Any] = {"sessions": sessions, "calls_each": calls, "failed_creations": failed}
    rounds = {"floor": floor, "python": python}
    counted: dict[str, tuple[str, ...]] = {
        "floor": ("server", "floor_worker", "client"),
        "python": ("server", "worker", "client"),
    }
    web: aiohttp.ClientSession | None = None
    ids = [f"bench-core-http-{uuid.uuid4().hex[:8]}" for _ in range(sessions)]
    if http is not None:
        url, key = http
        web = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key}"},
            connector=aiohttp.TCPConnector(limit=sessions),
        )

        async def create(worker_id: str) -> None:
            assert web is not None
            path = f"{url}/api/v1/session/create"
            answer = await _post(web, path, worker_id, resource_type="bash")
            if answer.get("code") != 0:
                raise RuntimeError(f"creating a session over HTTP failed: {answer}")

        await _each(ids, lambda w: _retried(lambda: create(w), failed))

        async def over_http(i: int) -> bool:
            assert web is not None
            answer = await _post(
                web, f"{url}/api/v1/execute", ids[i], action="bash:run", params=ECHO
            )
            return answer.get("code") == 0

        rounds["http"] = over_http
        counted["http"] = ("server", "worker", "http", "client")
    try:
        for name, call in [*rounds.items(), *reversed(rounds.items())]:
            row = await _round(_drive(calls, call), sessions, calls, pids)
            kept = out.get(name)
            if kept is None or row["calls_per_second"] > kept["calls_per_second"]:
                out[name] = _per_core(row, counted[name])  # the better of two rounds
    finally:
        await asyncio.gather(*(sb.destroy_session("bash") for sb in boxes))
        await asyncio.gather(*(f.execute_update(FloorWorkflow.finish) for f in floors))
        if web is not None:
            await asyncio.gather(
                *(_post(web, f"{url}/api/v1/session/destroy", w, resource_type="bash") for w in ids)
            )
            await web.close()
    for name in ("python", "http"):
        if name in out:
            out[name]["ratio_to_floor"] = round(
                out[name]["calls_per_core_second"] / out["floor"]["calls_per_core_second"], 2
            )
    return out


async def _each(items: list[Any], make: Callable[[Any], Awaitable[None]]) -> None:
    """``make`` for every item, 10 at once (the calls are measured, not the creations)."""
    gate = asyncio.Semaphore(10)

    async def one(item: Any) -> None:
        async with gate:
            await make(item)

    await asyncio.gather(*(one(item) for item in items))


async def _retried(make: Callable[[], Awaitable[None]], failed: list[str]) -> None:
    try:
        await make()
    except Exception as exc:
        failed.append(str(exc)[:300])
        await make()


async def _post(web: aiohttp.ClientSession, url: str, worker_id: str, **body: Any) -> Any:
    async with web.post(url, json={"worker_id": worker_id, **body}) as response:
        return await response.json()
