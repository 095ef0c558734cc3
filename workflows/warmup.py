"""WarmupWorkflow: warm backends on a worker ahead of the first call."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contract import WarmupInput, WarmupResult
    from contract import activities as stubs


@workflow.defn
class WarmupWorkflow:
    @workflow.run
    async def run(self, inp: WarmupInput) -> WarmupResult:
        return await workflow.execute_activity(
            stubs.warmup,
            inp,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=2),
        )
