"""Bare Temporal operations our paths are built on: the floor each path is compared with."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

FLOOR_QUEUE = "bench-floor"


@activity.defn(name="bench.noop")
async def noop_activity(value: str) -> str:
    return value


@activity.defn(name="bench.sleep")
async def sleep_activity(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@workflow.defn
class FloorWorkflow:
    # The queue is known from the start: the SDK runs an update that arrives with the workflow's
    # first task before run() begins, so setting it in run() sent that update's activity to the
    # workflow's own queue instead.
    @workflow.init
    def __init__(self, pinned_queue: str) -> None:
        self._done = False
        self._queue = pinned_queue

    @workflow.run
    async def run(self, pinned_queue: str) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update
    async def noop(self, value: str) -> str:
        return value

    @workflow.update
    async def with_activity(self, value: str) -> str:
        return await workflow.execute_activity(
            noop_activity,
            value,
            task_queue=self._queue or None,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_start_timeout=timedelta(seconds=10),
        )

    @workflow.update
    async def with_local_activity(self, value: str) -> str:
        return await workflow.execute_local_activity(
            noop_activity, value, start_to_close_timeout=timedelta(seconds=30)
        )

    @workflow.update
    async def with_slow_local_activity(self, seconds: float) -> float:
        """The floor of a session's creation: a local activity as long as its initialize."""
        return await workflow.execute_local_activity(
            sleep_activity, seconds, start_to_close_timeout=timedelta(seconds=30)
        )

    @workflow.update
    async def finish(self) -> None:
        self._done = True


#: The queue of a floor worker that runs with our SessionsPlugin (``--plugin``).
PLUGIN_FLOOR_QUEUE = f"{FLOOR_QUEUE}-plugin"


async def run_floor_worker(address: str, pinned_queue: str, plugin: bool = False) -> None:
    """Run the floor's workers in a process of their own, as ours runs: the same topology.

    With ``plugin``, the worker's client carries our SessionsPlugin (pydantic converter, large
    payloads stored outside history, tracing), as our workers do, and it polls
    :data:`PLUGIN_FLOOR_QUEUE`: the bare floor plus what the plugin costs per payload.
    """
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import PollerBehaviorAutoscaling, Worker

    from worker import workflow_worker_options

    if plugin:
        from runtime.plugin import SessionsPlugin

        client = await Client.connect(address, plugins=[SessionsPlugin()])
    else:
        client = await Client.connect(address, data_converter=pydantic_data_converter)
    workers = [
        Worker(
            client,
            task_queue=PLUGIN_FLOOR_QUEUE if plugin else FLOOR_QUEUE,
            workflows=[FloorWorkflow],
            activities=[noop_activity, sleep_activity],
            **workflow_worker_options(),  # the same runner and pollers as ours: a fair floor
        ),
        Worker(
            client,
            task_queue=pinned_queue,
            activities=[noop_activity],
            activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        ),
    ]
    print("READY", flush=True)
    await asyncio.gather(*(w.run() for w in workers))


async def start_floor_worker(
    address: str, pinned_queue: str, *, plugin: bool = False
) -> asyncio.subprocess.Process:
    """The floor's worker in a process of its own, as ours runs: on this machine a worker in the
    client's own process answers faster, which would flatter the floor. Returns once it polls."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.floor",
        address,
        pinned_queue,
        *(["--plugin"] if plugin else []),
        cwd=str(Path(__file__).resolve().parent.parent),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    if (await proc.stdout.readline()).strip() != b"READY":
        raise RuntimeError(f"the floor's worker exited with {await proc.wait()}")
    return proc


async def new_floor(
    client: Client, pinned: str, queue: str = FLOOR_QUEUE
) -> WorkflowHandle[Any, Any]:
    """A floor workflow waiting for updates (a session's floor)."""
    return await client.start_workflow(
        FloorWorkflow.run, pinned, id=f"floor-{uuid.uuid4().hex[:8]}", task_queue=queue
    )


async def start_floor(
    client: Client, pinned: str, update: Any, arg: Any, **start: Any
) -> WorkflowHandle[Any, Any]:
    """A new floor workflow started together with its first update (update-with-start);
    ``start``: more options of the start (search attributes, a summary)."""
    op = WithStartWorkflowOperation(
        FloorWorkflow.run,
        pinned,
        id=f"floor-{uuid.uuid4().hex}",
        task_queue=FLOOR_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        **start,
    )
    await client.execute_update_with_start_workflow(update, arg, start_workflow_operation=op)
    return await op.workflow_handle()


if __name__ == "__main__":
    # Run the module's own copy, not __main__'s: the workflow sandbox re-imports a workflow
    # from the module that defines it.
    from bench import floor

    asyncio.run(floor.run_floor_worker(sys.argv[1], sys.argv[2], "--plugin" in sys.argv[3:]))
