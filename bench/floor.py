"""Bare Temporal operations our paths are built on: the floor each path is compared with."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

FLOOR_QUEUE = "bench-floor"


@activity.defn(name="bench.noop")
async def noop_activity(value: str) -> str:
    return value


@workflow.defn
class FloorWorkflow:
    def __init__(self) -> None:
        self._done = False
        self._queue = ""

    @workflow.run
    async def run(self, pinned_queue: str) -> None:
        self._queue = pinned_queue
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
    async def finish(self) -> None:
        self._done = True
