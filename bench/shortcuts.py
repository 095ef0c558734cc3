"""Before and after the worker's SDK shortcuts (runtime/payload_visiting.py and type_adapters.py)
in one run: two workers, each on a task queue of its own, one with
``DURABLE_SESSIONS_SDK_SHORTCUTS=0`` (the SDK as it ships), beside the update + local activity
floor; rounds interleaved (floor, after, before, then the other way round).

.venv/bin/python -m bench.shortcuts [--seconds 10]

- throughput: 40 sessions x 20 ``bash:run`` at once on each worker, calls a second and CPU per
  call of the server, the worker (its jails and shells) and the client;
- creations: 8 loops of create, first call, destroy for ``--seconds`` on each worker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.creations import _run
from bench.floor import FLOOR_QUEUE, FloorWorkflow, new_floor, start_floor_worker
from bench.measure import stats
from bench.procs import created
from bench.server import start_embedded
from bench.throughput import _drive, _round
from client import Sandbox
from runtime.payload_visiting import SHORTCUTS_ENV
from tests.processes import WorkerProcess

SESSIONS, CALLS, LOOPS = 40, 20, 8


async def _boxes(client: Client, queue: str) -> list[Sandbox]:
    boxes = [
        Sandbox(f"bench-sc-{uuid.uuid4().hex[:8]}", client=client, task_queue=queue)
        for _ in range(SESSIONS)
    ]
    await asyncio.gather(*(created(sb, "bash") for sb in boxes))
    return boxes


async def main(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db")
        client = env.client
        address = client.service_client.config.target_host
        pinned = f"{FLOOR_QUEUE}/pinned-{uuid.uuid4().hex[:6]}"
        floor_worker = await start_floor_worker(address, pinned)
        queues = {name: f"bench-sc-{name}-{uuid.uuid4().hex[:6]}" for name in ("after", "before")}
        workers = {
            name: await WorkerProcess.start(
                address,
                args=["--task-queue", queue],
                env={SHORTCUTS_ENV: "1" if name == "after" else "0"},
            )
            for name, queue in queues.items()
        }
        try:
            out |= await _throughput(client, pinned, queues, workers, floor_worker.pid)
            out["creations"] = await _creations(client, queues, seconds)
        finally:
            for w in workers.values():
                await w.stop()
            floor_worker.terminate()
            await floor_worker.wait()
            await env.shutdown()
    out["load_after"] = os.getloadavg()
    return out


async def _throughput(
    client: Client,
    pinned: str,
    queues: dict[str, str],
    workers: dict[str, WorkerProcess],
    floor_pid: int,
) -> dict[str, Any]:
    floors = await asyncio.gather(*(new_floor(client, pinned) for _ in range(SESSIONS)))
    boxes = {name: await _boxes(client, queue) for name, queue in queues.items()}

    def ours(name: str) -> Any:
        async def call(i: int) -> bool:
            answer = await boxes[name][i].execute("bash:run", {"command": "echo hi"})
            return bool(answer["code"] == 0)

        return call

    async def floor(i: int) -> bool:
        await floors[i].execute_update(FloorWorkflow.with_local_activity, "x")
        return True

    pids = {"floor_worker": floor_pid, **{name: w.pid for name, w in workers.items()}}
    calls = {"floor": floor, "after": ours("after"), "before": ours("before")}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in calls}
    try:
        for name in [*calls, *reversed(calls)]:
            rows[name].append(await _round(_drive(CALLS, calls[name]), SESSIONS, CALLS, pids))
    finally:
        for group in boxes.values():
            await asyncio.gather(*(sb.destroy_session("bash") for sb in group))
        await asyncio.gather(*(f.execute_update(FloorWorkflow.finish) for f in floors))
    own = {"floor": "floor_worker", "after": "after", "before": "before"}
    out: dict[str, Any] = {}
    for name, runs in rows.items():
        best = max(runs, key=lambda r: r["calls_per_second"])
        cpu = best["cpu_ms_per_call"]
        out[name] = {
            "calls_per_second": best["calls_per_second"],
            "errors": sum(r["errors"] for r in runs),
            "worker_cpu_ms_per_call": cpu[own[name]],
            "server_cpu_ms_per_call": cpu["server"],
        }
    for name in ("after", "before"):
        out[name]["ratio_to_floor"] = round(
            out[name]["calls_per_second"] / out["floor"]["calls_per_second"], 2
        )
    return {"throughput": out}


async def _creations(client: Client, queues: dict[str, str], seconds: float) -> dict[str, Any]:
    def cycle(queue: str) -> Any:
        async def one() -> None:
            sb = Sandbox(f"bench-scc-{uuid.uuid4().hex[:8]}", client=client, task_queue=queue)
            await created(sb, "bash")
            answer = await sb.execute("bash:run", {"command": "echo hi"})
            await sb.destroy_session("bash")
            if answer["code"] != 0:
                raise RuntimeError(answer["message"])

        return one

    taken: dict[str, list[float]] = {name: [] for name in queues}
    walls = dict.fromkeys(queues, 0.0)
    for name in [*queues, *reversed(queues)]:
        ms, errors, wall = await _run(cycle(queues[name]), seconds / 2, LOOPS)
        if errors:
            raise RuntimeError(f"{errors} creations failed ({name})")
        taken[name] += ms
        walls[name] += wall
    return {
        name: {"per_second": round(len(ms) / walls[name], 1), **stats(ms)}
        for name, ms in taken.items()
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="creations on each worker")
    result = asyncio.run(main(parser.parse_args().seconds))
    for key, value in result.items():
        print(f"{key:12} {value}")
    sys.stdout.flush()
    os._exit(0)  # skip finalization, where the SDK's native threads can abort the process
