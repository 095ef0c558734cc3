"""Sustained creations: for a while, a few loops each create a bash session, run its first call
and destroy it, one after another; beside them the floor (update-with-start running a local
activity, an update running one, an update that ends the workflow), and the direct cycle: the
same bash backend started, called and ended in this process, no Temporal (what the jails alone
cost). Halves interleaved (ours, floor, direct, direct, floor, ours) so all meet the same
machine."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client

from backends.bash import BashBackend
from bench.floor import FloorWorkflow, start_floor
from bench.measure import stats
from bench.procs import created
from client import Sandbox

#: Loops running at once: enough to keep two cores busy, few enough to keep each cycle short.
LOOPS = 8

Cycle = Callable[[], Awaitable[None]]


def ours_cycle(client: Client) -> Cycle:
    async def cycle() -> None:
        sb = Sandbox(f"bench-new-{uuid.uuid4().hex[:8]}", client=client)
        await created(sb, "bash")
        answer = await sb.execute("bash:run", {"command": "echo hi"})
        await sb.destroy_session("bash")
        if answer["code"] != 0:
            raise RuntimeError(answer["message"])

    return cycle


def floor_cycle(client: Client, pinned: str) -> Cycle:
    async def cycle() -> None:
        handle = await start_floor(client, pinned, FloorWorkflow.with_local_activity, "x")
        await handle.execute_update(FloorWorkflow.with_local_activity, "y")
        await handle.execute_update(FloorWorkflow.finish)

    return cycle


def direct_cycle(backend: BashBackend) -> Cycle:
    async def cycle() -> None:
        info = await backend.initialize("bench", {})
        await backend.run("echo hi", session_info=info)
        await backend.cleanup("bench", info)

    return cycle


async def _run(cycle: Cycle, seconds: float, loops: int) -> tuple[list[float], int, float]:
    """Cycles for ``seconds``: each cycle's ms, the errors, the wall time taken."""
    times: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await cycle()
            except Exception:
                errors += 1
                continue
            times.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(loops)))
    return times, errors, time.perf_counter() - started


async def creations(
    client: Client, pinned: str, seconds: float, loops: int = LOOPS
) -> dict[str, Any]:
    """Creations a second (create, first call, destroy) over ``seconds`` each, beside the floor."""
    cycles = {
        "ours": ours_cycle(client),
        "floor": floor_cycle(client, pinned),
        "direct": direct_cycle(BashBackend()),
    }
    for cycle in cycles.values():  # warm: imports, the ready pool, connections
        await _run(cycle, 1, 2)
    taken: dict[str, dict[str, Any]] = {k: {"ms": [], "errors": 0, "wall": 0.0} for k in cycles}
    for name in ("ours", "floor", "direct", "direct", "floor", "ours"):
        ms, errors, wall = await _run(cycles[name], seconds / 2, loops)
        taken[name]["ms"] += ms
        taken[name]["errors"] += errors
        taken[name]["wall"] += wall
    out: dict[str, Any] = {"seconds_each": seconds, "loops": loops}
    for name, t in taken.items():
        out[name] = {
            "per_second": round(len(t["ms"]) / t["wall"], 1),
            "cycles": len(t["ms"]),
            "errors": t["errors"],
            **stats(t["ms"]),
        }
    out["ratio"] = round(out["ours"]["per_second"] / out["floor"]["per_second"], 2)
    return out
