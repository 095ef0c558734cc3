"""SharedToolsWorkflow: a sandbox's calls to shared tools (``rag:search``), no session needed.

One per sandbox (id ``<sandbox_id>:shared``), started by the first shared call through
update-with-start. Each call is one update running one local activity on the worker that runs the
workflow, whose backend is warmed once per process: no session, no second round trip.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contract import (
        Envelope,
        EnvelopeMeta,
        ErrorCode,
        ExecuteRequest,
        SharedToolsInput,
        ToolCallInput,
        ToolOutcome,
        split_tool_name,
    )
    from contract import activities as stubs
    from contract.limits import TOOL_TIMEOUT_MARGIN, timeout_problem, tool_timeout
    from workflows.activity_options import NO_RETRY
    from workflows.failures import Rejected, describe_failure
    from workflows.remembered_answers import remember


# A malformed input fails the workflow (or update) at once, not its task again and again.
@workflow.defn(failure_exception_types=[ValidationError])
class SharedToolsWorkflow:
    @workflow.init
    def __init__(self, inp: SharedToolsInput) -> None:
        self._input = inp
        self._results: dict[str, Envelope] = dict(inp.recent_results)
        self._calls = inp.call_count
        self._touched = False

    @workflow.run
    async def run(self, inp: SharedToolsInput) -> int:
        """Stay until no call came for ``idle_seconds``; answer how many calls it served."""
        while True:
            self._touched = False
            try:
                await workflow.wait_condition(
                    lambda: self._touched or workflow.info().is_continue_as_new_suggested(),
                    timeout=inp.idle_seconds,
                )
            except TimeoutError:
                break
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    inp.model_copy(
                        update={"recent_results": self._results, "call_count": self._calls}
                    )
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._calls

    @workflow.update
    async def execute(self, req: ExecuteRequest) -> Envelope:
        remembered = self._results.get(req.request_id)
        if remembered is not None:
            return remembered
        self._touched = True
        resource, _ = split_tool_name(req.tool)
        try:
            outcome = await workflow.execute_local_activity(
                stubs.call_tool,
                ToolCallInput(
                    session_id=None,
                    tool=req.tool,
                    params=req.params,
                    request_id=req.request_id,
                    strict_params=req.strict_params,
                ),
                start_to_close_timeout=timedelta(
                    seconds=tool_timeout(req.params) + TOOL_TIMEOUT_MARGIN
                ),
                retry_policy=NO_RETRY,
            )
        except ActivityError as exc:
            outcome = ToolOutcome(code=ErrorCode.INTERNAL, message=describe_failure(exc))
        self._calls += 1
        envelope = Envelope(
            code=outcome.code,
            message=outcome.message,
            data=outcome.data,
            meta=EnvelopeMeta(
                tool=req.tool,
                resource_type=resource,
                request_id=req.request_id,
                execution_time_ms=outcome.execution_time_ms,
                workflow_id=workflow.info().workflow_id,
                shared=True,
                ignored_params=outcome.ignored_params,
            ),
        )
        remember(self._results, req.request_id, envelope)
        return envelope

    @execute.validator
    def _validate_execute(self, req: ExecuteRequest) -> None:
        try:
            split_tool_name(req.tool)
        except ValueError as exc:
            raise Rejected(ErrorCode.UNKNOWN_TOOL, str(exc)) from None
        timeout = timeout_problem(req.params)
        if timeout is not None:
            raise Rejected(timeout[0], f"{req.tool}: {timeout[1]}")
