"""Load: sessions created at once beside the bare floor, and worker memory with many held."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.floor import FloorWorkflow, start_floor
from client import Sandbox

#: Makes one session (or floor workflow) and answers how to end it.
Make = Callable[[], Awaitable[Callable[[], Awaitable[Any]]]]


async def load(client: Client, worker_pid: int, pinned: str, *, quick: bool) -> dict[str, Any]:
    """Concurrency and memory: creations at once, many sessions held."""

    async def ours() -> Callable[[], Awaitable[Any]]:
        sb = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
        await sb.create_session("testkit", {"init_delay": 0.5})  # initialize takes 0.5 s
        return lambda: sb.destroy_session("testkit")

    async def floor() -> Callable[[], Awaitable[Any]]:
        handle = await start_floor(client, pinned, FloorWorkflow.with_slow_local_activity, 0.5)
        return lambda: handle.execute_update(FloorWorkflow.finish)

    bursts = 2 if quick else 5  # one burst is noisy on a small machine: take the median
    rows: dict[str, Any] = {
        "creations_floor": {
            "what": "20 x (update-with-start running a 0.5 s local activity) at once",
            **await _creations(floor, bursts),
        },
        "creations_ours": {
            "what": "20 create_session at once, initialize 0.5 s (testkit)",
            **await _creations(ours, bursts),
        },
    }
    rows["creations_ours"]["target"] = 1.3
    rows["creations_ours"]["met"] = rows["creations_ours"]["ratio"] <= 1.3
    held = 100 if quick else 1000
    rows["held"] = await held_sessions(client, worker_pid, held, None)
    return rows


async def _creations(make: Make, bursts: int) -> dict[str, Any]:
    """One creation alone (median of 3) vs 20 at once (median wall of ``bursts``)."""
    one, walls = [], []
    for _ in range(3):
        started = time.perf_counter()
        finish = await make()
        one.append((time.perf_counter() - started) * 1000)
        await finish()
    for _ in range(bursts):
        started = time.perf_counter()
        finishes = await asyncio.gather(*(make() for _ in range(20)))
        walls.append((time.perf_counter() - started) * 1000)
        await asyncio.gather(*(f() for f in finishes))
    single, wall = statistics.median(one), statistics.median(walls)
    return {
        "wall_ms": round(wall, 1),
        "one_ms": round(single, 1),
        "ratio": round(wall / single, 2),
        "walls_ms": [round(w) for w in walls],
    }


async def held_sessions(
    client: Client, worker_pid: int, held: int, cache: int | None
) -> dict[str, Any]:
    """Worker memory while ``held`` idle sessions are open (each holding a testkit instance)."""
    gate = asyncio.Semaphore(50)

    async def hold() -> Sandbox:
        async with gate:
            sb = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
            await sb.create_session("testkit", {})
            return sb

    async def release(sb: Sandbox) -> None:
        async with gate:
            await sb.destroy_session("testkit")

    # A first round pays the one-time costs (imports, caches) so they are not counted per session.
    await asyncio.gather(
        *(release(sb) for sb in await asyncio.gather(*(hold() for _ in range(50))))
    )
    before = _rss_mb(worker_pid)
    started = time.perf_counter()
    kept = await asyncio.gather(*(hold() for _ in range(held)))
    created = time.perf_counter() - started
    after = _rss_mb(worker_pid)
    row: dict[str, Any] = {
        "sessions": held,
        "worker_cache": cache if cache is not None else "all (default 1000)",
        "worker_rss_before_mb": before,
        "worker_rss_after_mb": after,
        "per_session_kb": round((after - before) * 1024 / held, 1),
        "created_per_second": round(held / created, 1),
    }
    if cache is None:
        row["target_mb"] = 400
        row["met"] = after <= 400
    await asyncio.gather(*(release(sb) for sb in kept))
    return row


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0
