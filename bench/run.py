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
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.floor import FLOOR_QUEUE, FloorWorkflow, noop_activity
from client import Sandbox
from client.embedded import temporal_binary
from contract import SEARCH_ATTRIBUTES
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


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
    }


async def main(quick: bool) -> dict[str, Any]:
    n = 20 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            dev_server_database_filename=str(Path(tmp) / "temporal.db"),
            search_attributes=SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )
        client = env.client
        address = client.service_client.config.target_host
        worker = await WorkerProcess.start(address)
        pinned = f"{FLOOR_QUEUE}/pinned-{uuid.uuid4().hex[:6]}"
        floor_workers = [
            Worker(
                client,
                task_queue=FLOOR_QUEUE,
                workflows=[FloorWorkflow],
                activities=[noop_activity],
            ),
            Worker(client, task_queue=pinned, activities=[noop_activity]),
        ]
        runs = [asyncio.create_task(w.run()) for w in floor_workers]
        try:
            results = await _measure(client, pinned, n)
        finally:
            for w in floor_workers:
                await w.shutdown()
            for r in runs:
                r.cancel()
            await worker.stop()
            await env.shutdown()
    return results


async def _measure(client: Any, pinned: str, n: int) -> dict[str, Any]:
    floor = await client.start_workflow(
        FloorWorkflow.run, pinned, id=f"floor-{uuid.uuid4().hex[:8]}", task_queue=FLOOR_QUEUE
    )
    rows: dict[str, dict[str, float]] = {}
    rows["floor: update (no-op)"] = _stats(
        await _timed(n, lambda i: floor.execute_update(FloorWorkflow.noop, "x"))
    )
    rows["floor: update + activity (worker queue)"] = _stats(
        await _timed(n, lambda i: floor.execute_update(FloorWorkflow.with_activity, "x"))
    )
    rows["floor: update + local activity"] = _stats(
        await _timed(n, lambda i: floor.execute_update(FloorWorkflow.with_local_activity, "x"))
    )

    async def start_plus_update(i: int) -> None:
        op = WithStartWorkflowOperation(
            FloorWorkflow.run,
            pinned,
            id=f"floor-start-{uuid.uuid4().hex}",
            task_queue=FLOOR_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        await client.execute_update_with_start_workflow(
            FloorWorkflow.with_activity, "x", start_workflow_operation=op
        )
        await op.workflow_handle()

    rows["floor: start + update + activity"] = _stats(await _timed(n, start_plus_update))
    await floor.execute_update(FloorWorkflow.finish)

    sandbox = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
    await sandbox.create_session("bash")
    rows["ours: bash:run echo (explicit session)"] = _stats(
        await _timed(n, lambda i: sandbox.execute("bash:run", {"command": "echo hi"}))
    )
    await sandbox.destroy_session("bash")
    # A no-op shared tool: the plugin package under tests/ provides `tally`.
    await sandbox.warmup(["tally"])
    rows["ours: shared tool (tally:ping)"] = _stats(
        await _timed(n, lambda i: sandbox.execute("tally:ping", {}))
    )
    temp = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
    rows["ours: temporary execute"] = _stats(
        await _timed(n, lambda i: temp.execute("bash:run", {"command": "echo hi"}))
    )

    created: list[Sandbox] = []

    async def create_then_first(i: int) -> None:
        sb = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
        await sb.create_session("bash")
        await sb.execute("bash:run", {"command": "echo hi"})
        created.append(sb)

    rows["ours: create_session -> first result"] = _stats(await _timed(n, create_then_first))
    await asyncio.gather(*(sb.destroy_session("bash") for sb in created))

    ratios = {
        "ours: bash:run echo (explicit session)": "floor: update + activity (worker queue)",
        "ours: shared tool (tally:ping)": "floor: update + local activity",
        "ours: temporary execute": "floor: update + activity (worker queue)",
        "ours: create_session -> first result": "floor: start + update + activity",
    }
    for ours, base in ratios.items():
        rows[ours]["floor"] = base  # type: ignore[assignment]
        rows[ours]["ratio_p50"] = round(rows[ours]["p50_ms"] / rows[base]["p50_ms"], 2)
    return rows


def _print(rows: dict[str, Any]) -> None:
    print(f"{'path':45} {'p50 ms':>9} {'p95 ms':>9} {'ours/floor':>11}")
    for name, row in rows.items():
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
