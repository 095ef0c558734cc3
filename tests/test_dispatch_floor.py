"""The bare floor has no step: update + activity costs the same on call 40 as on call 5.

The history service reads its transfer queue at most ``history.transferProcessorMaxPollRPS``
times a second per shard (default 20, burst 20). Every activity task passes through it, so on a
server left at the default an update that runs an activity costs ~25 ms for about 14 calls, then
~100 ms: a floor that pays that hides it from every comparison made against it. The dev server
here is started the way ./run.sh starts it (runtime.embedded.dev_server_command).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, Worker

from bench.floor import FloorWorkflow, noop_activity
from tests.devserver import DevServer
from worker import workflow_worker_options

CALLS = 40


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Client]:
    server = DevServer(tmp_path / "temporal.db")
    client = await server.start()
    try:
        yield client
    finally:
        await server.stop()


async def test_update_with_an_activity_keeps_its_latency_over_forty_calls(
    embedded: Client,
) -> None:
    queue = f"floor-{uuid.uuid4().hex[:8]}"
    pinned = f"{queue}/pinned"  # a worker-specific queue, as a session's calls use
    workers = [
        Worker(embedded, task_queue=queue, workflows=[FloorWorkflow], **workflow_worker_options()),
        Worker(
            embedded,
            task_queue=pinned,
            activities=[noop_activity],
            activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        ),
    ]
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        handle = await embedded.start_workflow(
            FloorWorkflow.run, pinned, id=f"floor-{uuid.uuid4().hex}", task_queue=queue
        )
        latencies: list[float] = []
        for _ in range(CALLS):
            started = time.perf_counter()
            assert await handle.execute_update(FloorWorkflow.with_activity, "x") == "x"
            latencies.append((time.perf_counter() - started) * 1000)
        await handle.execute_update(FloorWorkflow.finish)
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*runs, return_exceptions=True)

    first, last = statistics.median(latencies[:10]), statistics.median(latencies[-20:])
    print(f"median of the first 10: {first:.1f} ms, of the last 20: {last:.1f} ms")
    assert last <= 1.5 * first, (
        f"update + activity stepped from {first:.1f} ms (first 10) to {last:.1f} ms (last 20): "
        f"is history.transferProcessorMaxPollRPS raised? {[round(x) for x in latencies]}"
    )
