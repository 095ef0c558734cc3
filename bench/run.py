"""Measure our paths beside the bare Temporal floor, in one run on the embedded dev server.

.venv/bin/python -m bench.run            # full run (prints a table, writes bench/results/*.json)
.venv/bin/python -m bench.run --quick    # a smoke check with few iterations
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench.floor import FLOOR_QUEUE, FloorWorkflow, start_floor_worker
from bench.server import start_embedded
from client import Sandbox
from tests.processes import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent


async def _timed(n: int, op: Callable[[int], Awaitable[Any]], warmup: int = 3) -> list[float]:
    for i in range(warmup):
        await op(-1 - i)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await op(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _paired(
    n: int, floor_op: Callable[[int], Awaitable[Any]], ours_op: Callable[[int], Awaitable[Any]]
) -> tuple[list[float], list[float]]:
    """Alternate the floor and our path, so both meet the same machine and server moment:
    on these machines latency shifts in steps during a run (the floor alone moves from ~40 ms
    to ~100 ms after a few dozen calls), which would make separate runs incomparable."""
    await _timed(0, floor_op)
    await _timed(0, ours_op)
    floor_samples: list[float] = []
    ours_samples: list[float] = []
    for _ in range(n):
        floor_samples += await _timed(1, floor_op, warmup=0)
        ours_samples += await _timed(1, ours_op, warmup=0)
    return floor_samples, ours_samples


def _stats(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
    }


async def main(quick: bool) -> dict[str, Any]:
    n = 20 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db")  # as the main command runs it
        client = env.client
        address = client.service_client.config.target_host
        worker = await WorkerProcess.start(address)
        pinned = f"{FLOOR_QUEUE}/pinned-{uuid.uuid4().hex[:6]}"
        floor_worker = await start_floor_worker(address, pinned)
        try:
            results = await _measure(client, pinned, n, worker.pid)
            await worker.stop()
            # The same sessions on a worker whose cache holds only a tenth of them: what an
            # idle session costs once evicted.
            held = 100 if quick else 1000
            worker = await WorkerProcess.start(
                address, args=["--max-cached-sessions", str(held // 10)]
            )
            results.update(await _held(client, worker.pid, held, f"cache {held // 10}"))
        finally:
            floor_worker.terminate()
            await floor_worker.wait()
            await worker.stop()
            await env.shutdown()
    return results


async def _start_floor(client: Any, pinned: str, update: Any, arg: Any) -> Any:
    """A new floor workflow started together with its first update (update-with-start)."""
    op = WithStartWorkflowOperation(
        FloorWorkflow.run,
        pinned,
        id=f"floor-{uuid.uuid4().hex}",
        task_queue=FLOOR_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
    await client.execute_update_with_start_workflow(update, arg, start_workflow_operation=op)
    return await op.workflow_handle()


async def _measure(client: Any, pinned: str, n: int, worker_pid: int) -> dict[str, Any]:
    floor = await client.start_workflow(
        FloorWorkflow.run, pinned, id=f"floor-{uuid.uuid4().hex[:8]}", task_queue=FLOOR_QUEUE
    )
    rows: dict[str, dict[str, Any]] = {}
    rows["floor: update (no-op)"] = _stats(
        await _timed(n, lambda i: floor.execute_update(FloorWorkflow.noop, "x"))
    )

    async def floor_activity(i: int) -> None:
        await floor.execute_update(FloorWorkflow.with_activity, "x")

    async def floor_local(i: int) -> None:
        await floor.execute_update(FloorWorkflow.with_local_activity, "x")

    async def floor_start(i: int) -> None:
        handle = await _start_floor(client, pinned, FloorWorkflow.with_activity, "x")
        await handle.execute_update(FloorWorkflow.finish)

    sandbox = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
    await sandbox.create_session("bash")
    # A no-op shared tool: the plugin package under tests/ provides `tally`.
    await sandbox.warmup(["tally"])
    temp = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
    created: list[Sandbox] = []

    async def create_then_first(i: int) -> None:
        sb = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
        await sb.create_session("bash")
        await sb.execute("bash:run", {"command": "echo hi"})
        created.append(sb)

    pairs: list[tuple[str, str, Callable[[int], Awaitable[Any]], Callable[[int], Awaitable[Any]]]]
    pairs = [
        (
            "bash:run echo (explicit session)",
            "update + activity (worker queue)",
            floor_activity,
            lambda i: sandbox.execute("bash:run", {"command": "echo hi"}),
        ),
        (
            "shared tool (tally:ping)",
            "update + local activity",
            floor_local,
            lambda i: sandbox.execute("tally:ping", {}),
        ),
        (
            "temporary execute",
            "update + activity (worker queue)",
            floor_activity,
            lambda i: temp.execute("bash:run", {"command": "echo hi"}),
        ),
        (
            "create_session -> first result",
            "start + update + activity",
            floor_start,
            create_then_first,
        ),
    ]
    for ours_name, floor_name, floor_op, ours_op in pairs:
        floor_samples, ours_samples = await _paired(n, floor_op, ours_op)
        rows[f"floor: {floor_name} [beside {ours_name}]"] = _stats(floor_samples)
        ours = _stats(ours_samples)
        ours["ratio_p50"] = round(ours["p50_ms"] / statistics.median(floor_samples), 2)
        rows[f"ours: {ours_name}"] = ours
    await floor.execute_update(FloorWorkflow.finish)
    await sandbox.destroy_session("bash")
    await asyncio.gather(*(sb.destroy_session("bash") for sb in created))

    rows.update(await _load(client, worker_pid, pinned, quick=n < 100))
    return rows


async def _load(client: Any, worker_pid: int, pinned: str, *, quick: bool) -> dict[str, Any]:
    """Concurrency and memory: creations at once, many sessions calling at once, many held."""
    rows: dict[str, Any] = {}

    async def create(config: dict[str, Any], rt: str = "testkit") -> Sandbox:
        sb = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
        await sb.create_session(rt, config)
        return sb

    slow = {"init_delay": 0.5}  # a backend whose initialize takes 0.5 s

    async def create_slow() -> Callable[[], Awaitable[Any]]:
        sb = await create(slow)
        return lambda: sb.destroy_session("testkit")

    async def floor_slow() -> Callable[[], Awaitable[Any]]:
        handle = await _start_floor(client, pinned, FloorWorkflow.with_slow_local_activity, 0.5)
        return lambda: handle.execute_update(FloorWorkflow.finish)

    bursts = 2 if quick else 5  # one burst is noisy on a small machine: take the median
    for name, make in (
        ("floor: start + update + 0.5 s local activity", floor_slow),
        ("ours", create_slow),
    ):
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
        label = "" if name == "ours" else f" [{name}]"
        rows[f"load: 20 creations at once (initialize 0.5 s){label}"] = {
            "wall_ms": round(wall, 1),
            "one_creation_ms": round(single, 1),
            "ratio": round(wall / single, 2),
            "walls_ms": [round(w) for w in walls],
        }

    sessions, calls = (10, 5) if quick else (50, 20)
    boxes = await asyncio.gather(*(create({}, "bash") for _ in range(sessions)))

    async def drive(sb: Sandbox) -> list[int]:
        return [
            (await sb.execute("bash:run", {"command": "echo hi"}))["code"] for _ in range(calls)
        ]

    started = time.perf_counter()
    codes = [c for per in await asyncio.gather(*(drive(sb) for sb in boxes)) for c in per]
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(sb.destroy_session("bash") for sb in boxes))
    rows[f"load: {sessions} sessions x {calls} bash calls at once"] = {
        "calls_per_second": round(len(codes) / elapsed, 1),
        "errors": sum(c != 0 for c in codes),
        "wall_ms": round(elapsed * 1000, 1),
    }

    rows.update(await _held(client, worker_pid, 100 if quick else 1000, "all cached"))
    return rows


async def _held(client: Any, worker_pid: int, held: int, label: str) -> dict[str, Any]:
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
    row = {
        "worker_rss_before_mb": before,
        "worker_rss_after_mb": after,
        "per_session_kb": round((after - before) * 1024 / held, 1),
        "created_per_second": round(held / created, 1),
    }

    await asyncio.gather(*(release(sb) for sb in kept))
    return {f"load: {held} live sessions held ({label})": row}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _print(rows: dict[str, Any]) -> None:
    print(f"{'path':45} {'p50 ms':>9} {'p95 ms':>9} {'ours/floor':>11}")
    for name, row in rows.items():
        if "p50_ms" not in row:
            print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in row.items()))
            continue
        ratio = f"{row['ratio_p50']:.2f}x" if "ratio_p50" in row else ""
        print(f"{name:45} {row['p50_ms']:9.2f} {row['p95_ms']:9.2f} {ratio:>11}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(main(args.quick))
    _print(rows)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    (out / f"bench-{stamp}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    cli()
