"""Where the floor's update + activity spends its time, call by call, from history timestamps.

.venv/bin/python -m bench.dispatch [CALLS]

Prints each call's client-side latency, then per update: activity scheduled -> started, and the
next workflow task's scheduled -> started (task dispatch), in ms. The floor's worker runs in its
own process, as ours does.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

from temporalio.api.enums.v1 import EventType

from bench.floor import FLOOR_QUEUE, FloorWorkflow, start_floor_worker
from bench.server import start_embedded


async def main(calls: int) -> None:
    env = await start_embedded(None)
    address = env.client.service_client.config.target_host
    worker = await start_floor_worker(address, "dispatch-pinned")
    try:
        handle = await env.client.start_workflow(
            FloorWorkflow.run, "dispatch-pinned", id="dispatch", task_queue=FLOOR_QUEUE
        )
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            await handle.execute_update(FloorWorkflow.with_activity, "x")
            latencies.append(round((time.perf_counter() - started) * 1000))
        print("client ms per call:", latencies)
        activity_wait: list[int] = []
        task_wait: list[int] = []
        marks: dict[str, float] = {}
        for event in (await handle.fetch_history()).events:
            at = event.event_time.ToDatetime().timestamp() * 1000
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                activity_wait.append(round(at - marks["activity"]))
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                marks["completed"] = at
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and "completed" in marks:
                task_wait.append(round(at - marks.pop("completed")))
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                marks["activity"] = at
        print("activity scheduled -> started ms:", activity_wait)
        print("workflow task after the activity, scheduled -> started ms:", task_wait)
        half = calls // 2
        print(
            f"median first {half}: {statistics.median(latencies[:half])} ms, "
            f"last {calls - half}: {statistics.median(latencies[half:])} ms"
        )
        await handle.execute_update(FloorWorkflow.finish)
    finally:
        worker.terminate()
        await worker.wait()
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 40))
    sys.stdout.flush()
    os._exit(0)  # skip finalization, where the SDK's native threads can abort the process
