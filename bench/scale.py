"""What RL users ask of one machine, each figure beside its bare-Temporal floor in one run:

- live sessions per GB, the worker's whole process tree (worker, jails, shells, interpreters)
  in PSS, for bash and code sessions, and suspended ones when the client can ask for them;
  floor: bare workflows held in a worker's cache;
- sustained creations a second (create, first call, destroy), p50/p95 of a cycle; floor:
  update-with-start + local activity, update + local activity, update that ends it;
- calls per core of the whole stack (server + worker + HTTP API + client CPU) at saturation,
  through the Python client and through the HTTP API; floor: update + local activity;
- history events and bytes, and SQLite growth, per 1,000 calls; floor: the same updates;
- and one of issue 28's targets: a temporary ``code:execute`` over HTTP within 2x a temporary
  ``bash:run`` (p50, sequential calls).

.venv/bin/python -m bench.scale                      # ~6 minutes: 200 sessions, 60 s creations
.venv/bin/python -m bench.scale --quick              # ~2 minutes: 50 sessions, 10 s creations
.venv/bin/python -m bench.scale --workers 1,2,4      # throughput and creations, 1, 2, 4 workers

Results go to bench/results/scale-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.creations import creations
from bench.floor import FLOOR_QUEUE, start_floor_worker
from bench.growth import growth
from bench.http import _start_api
from bench.per_core import per_core
from bench.scale_memory import floors_per_gb, sessions_per_gb, suspend_supported
from bench.scale_out import scale_out
from bench.scale_report import report
from bench.server import start_embedded
from bench.temporary_http import temporary_http
from http_api.keys import new_key
from tests.processes import ROOT, WorkerProcess


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load": [round(x, 2) for x in os.getloadavg()]}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"before": _machine()},
    }
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        db_file = Path(tmp) / "temporal.db"
        env = await start_embedded(db_file)
        address = env.client.service_client.config.target_host
        pinned = f"{FLOOR_QUEUE}/pinned-{uuid.uuid4().hex[:6]}"
        floor = await start_floor_worker(address, pinned)
        try:
            if args.workers:
                counts = [int(n) for n in args.workers.split(",")]
                results["workers"] = await scale_out(env.client, address, pinned, counts, seconds)
            else:
                await _one_worker(results, env.client, db_file, pinned, floor.pid, args)
        finally:
            floor.terminate()
            await floor.wait()
            await env.shutdown()
    results["machine"]["after"] = _machine()
    return results


async def _one_worker(
    results: dict[str, Any],
    client: Client,
    db_file: Path,
    pinned: str,
    floor_pid: int,
    args: argparse.Namespace,
) -> None:
    """Every measurement on one worker process, beside the floor's, in ``results``."""
    address = client.service_client.config.target_host
    sessions = args.sessions or (50 if args.quick else 200)
    seconds = args.seconds or (10.0 if args.quick else 60.0)
    worker = await WorkerProcess.start(address)
    key, line = new_key("bench")
    api, url = await _start_api(address, line, beside_worker=False)
    loads = results["machine"]
    try:
        results["memory"] = await _memory(client, worker.pid, floor_pid, pinned, sessions)
        loads["after_memory"] = _machine()
        results["creations"] = await creations(client, pinned, seconds)
        loads["after_creations"] = _machine()
        pids = {"worker": worker.pid, "floor_worker": floor_pid, "http": api.pid}
        results["per_core"] = await per_core(client, pinned, pids, (url, key))
        loads["after_per_core"] = _machine()
        results["temporary_http"] = await temporary_http(url, key, 20 if args.quick else 60)
        results["growth"] = await growth(client, pinned, db_file, 200 if args.quick else 1000)
    finally:
        api.terminate()
        await api.wait()
        await worker.stop()


async def _memory(
    client: Any, worker_pid: int, floor_pid: int, pinned: str, n: int
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "floor": await floors_per_gb(client, floor_pid, pinned, n),
        "bash": await sessions_per_gb(client, worker_pid, "bash", n),
        "code": await sessions_per_gb(client, worker_pid, "code", n),
    }
    if suspend_supported():
        out["bash_suspended"] = await sessions_per_gb(client, worker_pid, "bash", n, suspend=2)
    else:
        out["bash_suspended"] = "not measured: the client has no idle_suspend_seconds yet"
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sessions, shorter runs")
    parser.add_argument("--sessions", type=int, help="sessions held for memory (default 200)")
    parser.add_argument("--seconds", type=float, help="seconds of creations (default 60)")
    parser.add_argument(
        "--workers", help="compare worker process counts, e.g. 1,2,4 (throughput, creations)"
    )
    args = parser.parse_args()
    results = asyncio.run(main(args))
    print(report(results))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = out / f"scale-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    sys.stdout.flush()
    os._exit(0)  # skip finalization, where the SDK's native threads can abort the process


if __name__ == "__main__":
    cli()
