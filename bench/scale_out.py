"""More worker processes on one machine: throughput (many sessions calling at once) and sustained
creations with 1, 2, 4 ... workers polling the same queue; the creations beside their floor in the
same step (the floor's own worker, unchanged), so a step of the machine's load shows in both."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import Client

from bench.creations import creations
from bench.procs import created
from bench.throughput import _drive, _round
from client import Sandbox
from tests.processes import WorkerProcess

SESSIONS, CALLS = 50, 20


async def _throughput(client: Client, pids: dict[str, int]) -> dict[str, Any]:
    """50 sessions x 20 bash:run at once, the better of two rounds."""
    boxes = [Sandbox(f"bench-out-{uuid.uuid4().hex[:8]}", client=client) for _ in range(SESSIONS)]
    await asyncio.gather(*(created(sb, "bash") for sb in boxes))

    async def call(i: int) -> bool:
        return (await boxes[i].execute("bash:run", {"command": "echo hi"}))["code"] == 0

    try:
        rows = [await _round(_drive(CALLS, call), SESSIONS, CALLS, pids) for _ in range(2)]
    finally:
        await asyncio.gather(*(sb.destroy_session("bash") for sb in boxes))
    best = max(rows, key=lambda r: r["calls_per_second"])
    worker_cpu = sum(v for k, v in best["cpu_ms_per_call"].items() if k.startswith("worker"))
    return {
        "calls_per_second": best["calls_per_second"],
        "errors": sum(r["errors"] for r in rows),
        "p50_ms": best.get("p50_ms"),
        "workers_cpu_ms_per_call": round(worker_cpu, 2),
    }


async def scale_out(
    client: Client, address: str, pinned: str, counts: list[int], seconds: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"counts": counts, "creation_seconds": seconds, "steps": {}}
    for n in counts:
        workers = list(await asyncio.gather(*(WorkerProcess.start(address) for _ in range(n))))
        try:
            pids = {f"worker{i}": w.pid for i, w in enumerate(workers)}
            step = {
                "throughput": await _throughput(client, pids),
                "creations": await creations(client, pinned, seconds),
            }
        finally:
            await asyncio.gather(*(w.stop() for w in workers))
        out["steps"][str(n)] = step
    first = out["steps"][str(counts[0])]
    for n in counts:
        step = out["steps"][str(n)]
        step["throughput_vs_first"] = round(
            step["throughput"]["calls_per_second"] / first["throughput"]["calls_per_second"], 2
        )
        step["creations_vs_first"] = round(
            step["creations"]["ours"]["per_second"] / first["creations"]["ours"]["per_second"], 2
        )
    return out
