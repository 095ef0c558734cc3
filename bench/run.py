"""Measure each of our paths beside the bare Temporal operation it is built on, in one run on the
embedded dev server, samples interleaved.

.venv/bin/python -m bench.run          # table, bench/results/bench-<time>.json, docs/bench.png
.venv/bin/python -m bench.run --quick  # a smoke check, few iterations (chart only with --chart)

Paths and their floors (ratio of p50s, target from issue 13):

- explicit session, ``bash:run`` echo, instance on the worker running the workflow task (a local
  activity) vs update + local activity (<= 1.3x); beside it the direct floor: the same tool
  called in-process on ``BashBackend``, no Temporal.
- the fallback path (a worker run with ``--no-local-calls`` on a queue of its own: every call goes
  through its pinned queue) vs update + activity on a worker queue (<= 1.25x).
- temporary execute vs update-with-start + one local activity (<= 1.5x). The worker keeps bash
  jails started ahead (``activities/warm_pool.py``), which this path and the next take; their
  direct floors start a fresh one.
- ``create_session`` -> first result vs (update-with-start + local activity) + (update + local
  activity) (<= 1.3x).
- a shared tool (``tally:ping``, no-op) vs update + local activity (<= 1.25x).
- ``execute_batch`` of 10 echo calls vs 10 sequential executes (no target).
- throughput, 50 sessions x 20 calls at once, vs 50 floor workflows x 20 updates (no-op, and
  update + local activity): >= 0.8x the update + local activity floor, 0 errors.
- 20 creations at once with a 0.5 s initialize vs one (<= 1.3x), bare Temporal beside it.
- worker RSS with 1,000 idle sessions held (<= 400 MB).

Diagnostics printed beside them, to say where the time goes: per-path medians from the
workflows' histories (dispatch vs time on the worker), the floors on a worker that carries our
SessionsPlugin, the fallback and temporary paths with a no-op plugin tool, the direct floor plus
the snapshot the worker takes after each call, two parts of the temporary path (the look for a
session a call with none sends first, and the jail's end), and CPU per call of each process
(children included) in the throughput rounds. ``python -m bench.chart FILE`` redraws a results file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chart import draw
from bench.floor import FLOOR_QUEUE, start_floor_worker
from bench.latency import Latency
from bench.load import held_sessions, load
from bench.report import report
from bench.server import start_embedded
from bench.throughput import throughput
from runtime.embedded import DYNAMIC_CONFIG
from tests.processes import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent


async def main(
    quick: bool, samples: int | None = None, latency_only: bool = False
) -> dict[str, Any]:
    n = samples or (20 if quick else 200)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "samples_per_path": n,
        "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()},
        "server": {"dynamic_config": DYNAMIC_CONFIG, "database": "sqlite file (WAL)"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db")  # as the main command runs it
        client = env.client
        address = client.service_client.config.target_host
        worker = await WorkerProcess.start(address)
        fallback_queue = f"bench-fallback-{uuid.uuid4().hex[:6]}"
        fallback = await WorkerProcess.start(
            address, args=["--task-queue", fallback_queue, "--no-local-calls"]
        )
        pinned = f"{FLOOR_QUEUE}/pinned-{uuid.uuid4().hex[:6]}"
        floor_worker = await start_floor_worker(address, pinned)
        plugin_floor = await start_floor_worker(address, f"{pinned}-plugin", plugin=True)
        loads = results["machine"]["load_by_section"] = {}
        try:
            results["latency"] = await Latency(client, pinned, fallback_queue, n).run()
            loads["latency"] = os.getloadavg()
            if latency_only:
                return results
            await fallback.stop()
            plugin_floor.terminate()
            await plugin_floor.wait()
            pids = {"worker": worker.pid, "floor_worker": floor_worker.pid}
            results["throughput"] = await throughput(client, pinned, quick, pids)
            loads["throughput"] = os.getloadavg()
            results["load"] = await load(client, worker.pid, pinned, quick=quick)
            loads["creations_and_held"] = os.getloadavg()
            await worker.stop()
            # The same sessions on a worker whose cache holds only a tenth of them: what an
            # idle session costs once evicted.
            held = 100 if quick else 1000
            worker = await WorkerProcess.start(
                address, args=["--max-cached-sessions", str(held // 10)]
            )
            results["load"]["held_evicted"] = await held_sessions(
                client, worker.pid, held, held // 10
            )
        finally:
            for proc in (floor_worker, plugin_floor):
                if proc.returncode is None:
                    proc.terminate()
                await proc.wait()
            await fallback.stop()
            await worker.stop()
            await env.shutdown()
    results["machine"]["load_after"] = os.getloadavg()
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke check")
    parser.add_argument(
        "--chart",
        type=Path,
        help="where to draw the chart (default docs/bench.png on a full run, none on --quick)",
    )
    parser.add_argument("--samples", type=int, help="samples per latency path (default 200)")
    parser.add_argument(
        "--latency-only", action="store_true", help="the latency paths alone (no chart)"
    )
    args = parser.parse_args()
    results = asyncio.run(main(args.quick, args.samples, args.latency_only))
    print(report(results))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    chart = args.chart or (None if args.quick or args.latency_only else ROOT / "docs" / "bench.png")
    if chart is not None:
        draw(results, chart)
        print(f"wrote {chart}")


if __name__ == "__main__":
    cli()
