"""ExecutePath: one execute inside the session, from the request to its envelope.

Answers a repeated request id once, runs the call on the instance (or once, for a temporary
session), recovers a lost instance (retrying an idempotent tool at most once), and hands the
answer to ``SessionCore`` (which records it). A streaming call runs as a regular activity and its
end is marked on the session's live output stream (``workflows.output_stream``).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from contract import (
    Envelope,
    EnvelopeMeta,
    ErrorCode,
    ExecuteRequest,
    InstanceInfo,
    ToolCallInput,
    ToolOutcome,
)
from workflows import instance_activities
from workflows.checks import check_call
from workflows.core import SessionCore
from workflows.failures import Rejected
from workflows.output_stream import SessionOutput
from workflows.params_check import unknown_params
from workflows.phase import Phase, Request

#: After a local try found the instance on another worker, every this many calls try here again.
PROBE_HERE_EVERY = 16
#: Patch id: a parameter the tool does not declare runs, dropped by the worker and named in
#: ``meta.ignored_params`` (recorded before: refused with 4000 once the catalog was known).
LENIENT_PARAMS = "lenient-params"


class ExecutePath:
    """The execute updates and signals of one session: each answered once, one at a time."""

    def __init__(self, core: SessionCore, output: SessionOutput) -> None:
        self.core = core
        self.output = output
        self._inflight: set[str] = set()
        #: Instances a local try found held elsewhere: calls made since (see _may_be_here).
        self._elsewhere: dict[str, int] = {}

    @property
    def idle(self) -> bool:
        """No execute is running or waiting for the session."""
        return not self._inflight

    # --- request handling ----------------------------------------------------------------------

    async def execute(self, req: ExecuteRequest, *, signal: bool = False) -> Envelope:
        envelope = await self._execute(req, signal)
        if req.stream:  # after all it published: a reader that sees the end has seen it all
            self.output.ended(envelope.meta.request_id or req.request_id, envelope)
        return envelope

    async def _execute(self, req: ExecuteRequest, signal: bool) -> Envelope:
        request_id = req.request_id or str(workflow.uuid4())
        remembered = self.core.state.recent_results.get(request_id)
        if remembered is not None:
            return remembered
        if request_id in self._inflight:  # a signal repeating a running request: answer once
            await workflow.wait_condition(lambda: request_id in self.core.state.recent_results)
            return self.core.state.recent_results[request_id]
        self._inflight.add(request_id)
        started = workflow.now()
        try:
            async with self.core.lock:
                envelope = await self._execute_locked(req, request_id, signal)
        finally:
            self._inflight.discard(request_id)
        self.core.remember(request_id, envelope)
        self._measure_execute(envelope, workflow.now() - started)
        return envelope

    async def _execute_locked(self, req: ExecuteRequest, request_id: str, signal: bool) -> Envelope:
        try:
            # Accepted work runs while draining: only new updates go to the next run.
            self.core.admit(Request.EXECUTE, req, signal=True)
            check_call(req, self.core.input.resource_type, self.core.state.instance, self.core.id)
            paused = self.core.phase is Phase.PAUSED and not self.core.input.temporary
            if paused:
                self._refuse_resume(req)
            if not self.core.input.temporary:
                await self.core.ensure_instance()
                check_call(
                    req, self.core.input.resource_type, self.core.state.instance, self.core.id
                )
                self._refuse_as_recorded(req)
        except Rejected as exc:
            via = "signal" if signal else "update"
            self.core.record("rejected", request_id=request_id, tool=req.tool[:200], code=exc.code,
                         message=f"execute ({via}): {exc.message}")  # fmt: skip
            return self._envelope(req, request_id, ToolOutcome(code=exc.code, message=exc.message))
        self.core.clock.move_deadline()
        if self.core.input.temporary:
            session_id = self.core.new_temporary_instance()
            outcome = await instance_activities.call_once(
                self.core.input,
                self._tool_call(req, request_id, session_id),
                self.core.state.config,
            )
        else:
            if paused and self.core.state.instance is not None:
                self.core.resumed_by_call()
            outcome = await self._call_on_instance(req, request_id)
        envelope = self._finish_call(req, request_id, outcome)
        envelope.meta.resumed = paused
        return envelope

    def _refuse_resume(self, req: ExecuteRequest) -> None:
        """A caller who set ``auto_resume`` False is told the session is paused (4007)."""
        wanted = req.auto_resume if req.auto_resume is not None else self.core.input.auto_resume
        if wanted:
            return
        why = "suspended after being idle" if self.core.state.suspended else "paused"
        raise Rejected(
            ErrorCode.NO_SESSION,
            f"session {self.core.id} is {why}: no instance runs it. Call again with auto_resume "
            "true (or resume it: set its state to active) to restore it and run the call",
        )

    async def _call_on_instance(
        self, req: ExecuteRequest, request_id: str, *, retried: bool = False
    ) -> ToolOutcome:
        instance = self.core.state.instance
        assert instance is not None
        call = self._tool_call(req, request_id, instance.session_id)
        # Live output needs the workflow task free while the call runs: not a local activity.
        call.stream = req.stream
        outcome = None
        if (
            not call.stream
            and instance_activities.runs_locally(call, instance)
            and self._may_be_here(instance)
        ):
            outcome = await instance_activities.call_here(call)
            if outcome.held_elsewhere:
                self._elsewhere[instance.session_id] = 0
                outcome = None
            else:
                self._elsewhere.pop(instance.session_id, None)
        if outcome is None:
            outcome = await instance_activities.call_on_instance(instance, call)
        if outcome.snapshot is not None:
            self.core.keep_snapshot(outcome.snapshot)
        if outcome.code != ErrorCode.RESOURCE_LOST:
            return outcome
        recovered = await self._recover(instance, outcome)
        if recovered.code == ErrorCode.RESOURCE_LOST and not retried and self._idempotent(req):
            # Safe to repeat, once: run it on the new instance instead of asking the caller to.
            self.core.record(
                "retry", request_id=request_id, tool=req.tool, message="after recovery"
            )
            return await self._call_on_instance(req, request_id, retried=True)
        return recovered

    def _refuse_as_recorded(self, req: ExecuteRequest) -> None:
        """A history recorded before ``LENIENT_PARAMS`` refused undeclared parameters here:
        replaying it, refuse them again (asks for the patch only when the answer differs)."""
        instance = self.core.state.instance
        if req.strict_params or instance is None:
            return
        spec = next((t for t in instance.tools if t.name == req.tool), None)
        if spec is None or not unknown_params(spec.params_schema, req.params):
            return
        if not workflow.patched(LENIENT_PARAMS):
            check_call(req, self.core.input.resource_type, instance, self.core.id, strict=True)

    def _may_be_here(self, instance: InstanceInfo) -> bool:
        """Try the call here unless a recent try found the instance on another worker: then go
        straight to its pinned queue, trying here again every ``PROBE_HERE_EVERY`` calls (the
        session's workflow tasks may move back to that worker)."""
        since = self._elsewhere.get(instance.session_id)
        if since is None:
            return True
        self._elsewhere[instance.session_id] = since + 1
        return (since + 1) % PROBE_HERE_EVERY == 0

    def _idempotent(self, req: ExecuteRequest) -> bool:
        instance = self.core.state.instance
        tools = instance.tools if instance else []
        return any(t.name == req.tool and t.idempotent for t in tools)

    async def _recover(self, lost: InstanceInfo, outcome: ToolOutcome) -> ToolOutcome:
        """The worker holding the instance is gone: make a new instance and tell the caller."""
        self.core.instance_lost(lost, outcome)
        try:
            await self.core.ensure_instance_or_fail()
        except Rejected as exc:
            return ToolOutcome(code=exc.code, message=f"resource lost: {exc.message}")
        new = self.core.state.instance
        if new is None:
            return ToolOutcome(
                code=ErrorCode.RESOURCE_LOST,
                message=f"resource lost and could not be re-initialized: {outcome.message}",
            )
        self.core.count("sessions_recovered", "instances re-created after their worker was lost")
        self.core.record(
            "recovered",
            session_id=new.session_id,
            message=f"instance {lost.session_id} replaced by {new.session_id}",
        )
        return ToolOutcome(
            code=ErrorCode.RESOURCE_LOST,
            message=(
                f"resource lost, re-initialized: instance {lost.session_id} was lost with its "
                f"worker and replaced by {new.session_id}; the call was not completed, retry it"
            ),
            data={"old_session_id": lost.session_id, "new_session_id": new.session_id},
        )

    def _tool_call(self, req: ExecuteRequest, request_id: str, session_id: str) -> ToolCallInput:
        return ToolCallInput(
            session_id=session_id,
            tool=req.tool,
            params=req.params,
            request_id=request_id,
            strict_params=req.strict_params,
        )

    def _finish_call(self, req: ExecuteRequest, request_id: str, outcome: ToolOutcome) -> Envelope:
        envelope = self._envelope(req, request_id, outcome)
        self.core.call_answered(envelope, req.params)
        return envelope

    def _envelope(self, req: ExecuteRequest, request_id: str, outcome: ToolOutcome) -> Envelope:
        if outcome.shared:  # a shared tool reached through a temporary session uses none
            session_id = None
        elif self.core.input.temporary:
            session_id = self.core.temporary_session_id
        else:
            session_id = self.core.state.instance.session_id if self.core.state.instance else None
        return Envelope(
            code=outcome.code,
            message=outcome.message,
            data=outcome.data,
            meta=EnvelopeMeta(
                tool=req.tool,
                resource_type=self.core.input.resource_type,
                session_id=session_id,
                temporary_session=self.core.input.temporary and not outcome.shared,
                request_id=request_id,
                execution_time_ms=outcome.execution_time_ms,
                workflow_id=self.core.id,
                shared=outcome.shared,
                ignored_params=outcome.ignored_params,
            ),
        )

    def _measure_execute(self, envelope: Envelope, took: timedelta) -> None:
        """Execute latency (workflow time: includes waiting for the session) and errors."""
        meter = workflow.metric_meter().with_additional_attributes(
            {"resource_type": self.core.input.resource_type}
        )
        meter.create_histogram_timedelta(
            "sessions_execute_latency", "execute, from the update to its answer", "ms"
        ).record(took)
        if envelope.code:
            meter.create_counter(
                "sessions_execute_errors", "executes answered with a non-zero code"
            ).add(1, {"code": str(envelope.code)})
