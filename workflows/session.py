"""SessionWorkflow: one durable session of one resource type.

The class keeps the handlers, validators and the run loop. What a session may do in each phase is
``workflows.phase``; its state and every change of it ``workflows.core`` (with the clock, the
bounded event log and the views beside it); one execute ``workflows.execute_path``; the activities
it runs on its instance ``workflows.instance_activities``.

It never fails a workflow task on a bad request: validators refuse bad updates before they reach
history, signal handlers record a refusal, and handlers turn every failure into an envelope.
"""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import workflow
from temporalio.contrib.workflow_streams import WorkflowStream
from temporalio.exceptions import ApplicationError

# Passed through: the sandbox shares these modules across runs instead of re-importing them.
with workflow.unsafe.imports_passed_through():
    from contract import (
        AppendRequest,
        BatchRequest,
        Checkpoint,
        CheckpointRequest,
        DestroyRequest,
        Envelope,
        ErrorCode,
        EventsPage,
        EventsQuery,
        ExecuteRequest,
        ForkRequest,
        ForkSource,
        InstanceReleased,
        MetadataRequest,
        OpenRequest,
        RefreshRequest,
        ReinitializeRequest,
        ReinitializeResult,
        RenameRequest,
        SaveCheckpointRequest,
        SessionEvent,
        SessionInput,
        SessionStatus,
        SessionSummary,
        SessionView,
        SetStateRequest,
    )
    from contract.limits import SESSION_CLOSING
    from workflows.checks import (
        check_call,
        check_entry,
        check_new_checkpoint,
        find_checkpoint,
        merged_metadata,
    )
    from workflows.core import SessionCore
    from workflows.execute_path import ExecutePath
    from workflows.failures import Rejected
    from workflows.forking import check_fork, fork
    from workflows.idle_suspend import suspend, suspend_in
    from workflows.output_stream import SessionOutput
    from workflows.phase import Answer, Phase, Request
    from workflows.replies import Replies
    from workflows.views import session_summary


# A malformed start input (or update argument) fails the workflow (or the update) at once,
# instead of failing the workflow task again and again. A wrong number of them is a TypeError
# (the SDK calls __init__ and run with the arguments it was given).
@workflow.defn(failure_exception_types=[ValidationError, TypeError])
class SessionWorkflow:
    @workflow.init
    def __init__(self, inp: SessionInput) -> None:
        self._core = SessionCore(inp)
        # Live output: the stream registers its handlers here (it must be made in init), from
        # where the previous run left it.
        carried = self._core.take_output_stream()
        self._output = SessionOutput(WorkflowStream(prior_state=carried))
        self._executes = ExecutePath(self._core, self._output)
        self._replies = Replies(self._core)

    # --- run loop ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: SessionInput) -> SessionSummary:
        self._core.clock.start()
        if inp.temporary:
            return await self._run_temporary()
        if not inp.resource_type and self._core.phase is Phase.STARTING:
            self._core.move(Phase.ACTIVE)  # a record: nothing to initialize
            self._core.show_details()
        if self._core.state.instance is None and self._core.phase is Phase.STARTING:
            async with self._core.lock:
                await self._core.ensure_instance_or_fail()
        await self._hold_until_closing()
        return await self._close()

    async def _hold_until_closing(self) -> None:
        """Sleep until the deadline (calls and refreshes move it), the idle time, a close, or
        continue-as-new."""
        while self._core.phase is not Phase.CLOSING:
            remaining = self._core.clock.remaining()
            if remaining <= 0:
                if self._core.lock.locked():  # a call is running: it will move the deadline
                    await workflow.wait_condition(lambda: not self._core.lock.locked())
                    continue
                pausing = self._core.life.can_move(Phase.PAUSED) or self._core.state.suspended
                if self._core.input.on_expire == "pause" and pausing:
                    async with self._core.lock:
                        await self._core.pause("expired; on_expire is pause")
                    continue
                self._core.life.close(Phase.EXPIRED, "expired")
                self._core.count("sessions_expired", "sessions closed at their deadline")
                break
            idle_in = self._core.clock.idle_in() if self._core.idle_timer_runs() else None
            if idle_in is not None and idle_in <= 0:
                self._core.move(Phase.IDLE)
                self._core.show_details()
                continue
            suspend_due = suspend_in(self._core)
            if suspend_due is not None and suspend_due <= 0:
                async with self._core.lock:  # after a running call, which makes it not idle
                    await suspend(self._core)
                continue
            wait, summary = remaining, "TTL deadline"
            if idle_in is not None and idle_in < remaining:
                wait, summary = idle_in, "idle timer"
            if suspend_due is not None and suspend_due < wait:
                wait, summary = suspend_due, "idle suspend"
            timed_out = await self._core.clock.sleep(
                wait,
                stop=lambda: self._core.phase is Phase.CLOSING or self._should_continue(),
                summary=summary,
            )
            if not timed_out and self._core.phase.is_open and self._should_continue():
                await self._drain_and_continue()

    async def _drain_and_continue(self) -> None:
        """Refuse new updates (clients resend them to the next run), let in-flight work finish,
        then continue as new; a destroy meanwhile completes the close instead."""
        self._core.move(Phase.DRAINING)
        # Watchers keep their live output until the accepted calls are answered; then their
        # polls (which never finish by themselves) are let go: they follow to the next run.
        await workflow.wait_condition(
            lambda: (
                (not self._core.lock.locked() and self._executes.idle)
                or self._core.phase is Phase.CLOSING
            )
        )
        self._output.detach()
        await workflow.wait_condition(
            lambda: (
                (not self._core.lock.locked() and workflow.all_handlers_finished())
                or self._core.phase is Phase.CLOSING
            )
        )
        if self._core.phase is Phase.DRAINING:
            workflow.continue_as_new(self._core.next_run(self._output.carried()))

    async def _run_temporary(self) -> SessionSummary:
        """One call, one instance, created and cleaned up inside a single activity."""
        self._core.move(Phase.ACTIVE)
        try:
            await workflow.wait_condition(
                lambda: self._core.state.call_count > 0 or self._core.phase is Phase.CLOSING,
                timeout=self._core.input.ttl_seconds,
                timeout_summary="TTL deadline",
            )
        except TimeoutError:
            self._core.life.close(Phase.EXPIRED, "expired")
        self._output.detach()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._core.life.close(Phase.CLOSED, "temporary call done")
        return await self._close()

    async def _close(self) -> SessionSummary:
        async with self._core.lock:
            last_id = self._core.state.instance.session_id if self._core.state.instance else None
            await self._core.release_instance()
            self._core.life.finish()
            self._core.sync_status()
            self._core.record("closed", message=self._core.life.reason)
        self._output.detach()  # watchers read what is left from the closed run
        await workflow.wait_condition(workflow.all_handlers_finished)
        return session_summary(
            self._core.input,
            self._core.state,
            self._core.life.status,
            self._core.life.reason,
            last_id,
            self._core.last_envelope,
        )

    # --- updates -----------------------------------------------------------------------------

    @workflow.update
    async def open(self, req: OpenRequest) -> SessionView:
        """Wait until the session's first instance is ready (or failed) and describe it. A
        session that is closing (a destroy accepted with this open) refuses it: the client
        retries, and its retry starts a fresh session once this one has closed."""
        await workflow.wait_condition(lambda: self._core.phase is not Phase.STARTING)
        self._refuse_open_while_closing()
        return self._core.view(
            created=bool(req.request_id) and req.request_id == self._core.input.opened_by
        )

    @open.validator
    def _validate_open(self, req: OpenRequest) -> None:
        self._core.admit(Request.OPEN, req)
        self._refuse_open_while_closing()

    def _refuse_open_while_closing(self) -> None:
        """Going away (a destroy, its deadline): refused. One that failed (its start, or its
        instance) answers its view, status error, as before."""
        closing = self._core.phase is Phase.CLOSING or self._core.phase.is_final
        if closing and self._core.life.status is not SessionStatus.ERROR:
            raise ApplicationError(
                f"session {self._core.id} is closing; open it again once it has closed",
                type=SESSION_CLOSING,
                non_retryable=True,
            )

    @workflow.update
    async def execute(self, req: ExecuteRequest) -> Envelope:
        """Run one tool call on the session's instance; the answer is always an envelope."""
        return await self._executes.execute(req)

    @execute.validator
    def _validate_execute(self, req: ExecuteRequest) -> None:
        self._core.admit(Request.EXECUTE, req)
        check_call(req, self._core.input.resource_type, self._core.state.instance, self._core.id)

    @workflow.update
    async def execute_batch(self, req: BatchRequest) -> list[Envelope]:
        """Several calls, one after another, answered in order, each with its own envelope."""
        return [await self._executes.execute(call) for call in req.calls]

    @execute_batch.validator
    def _validate_execute_batch(self, req: BatchRequest) -> None:
        for call in req.calls:
            self._validate_execute(call)

    @workflow.update
    async def refresh(self, req: RefreshRequest) -> SessionView:
        """Move the deadline: now + TTL (optionally a new TTL)."""
        self._core.refresh(req)
        return self._core.view()

    @refresh.validator
    def _validate_refresh(self, req: RefreshRequest) -> None:
        self._core.admit(Request.REFRESH, req)

    @workflow.update
    async def reinitialize(self, req: ReinitializeRequest) -> ReinitializeResult:
        """Replace the instance with a new one made from a new config."""
        return await self._core.reinitialize(req)

    @reinitialize.validator
    def _validate_reinitialize(self, req: ReinitializeRequest) -> None:
        self._core.admit(Request.REINITIALIZE, req)
        self._core.reject_if_temporary("reinitialized")

    @workflow.update
    async def fork(self, req: ForkRequest) -> ForkSource:
        """What ``req.children`` start from: this session's state now (or a checkpoint's)."""
        return await fork(self._core, req)

    @fork.validator
    def _validate_fork(self, req: ForkRequest) -> None:
        check_fork(self._core, req)

    @workflow.update
    async def destroy(self, req: DestroyRequest) -> SessionView:
        """Clean the instance up and close the session; idempotent."""
        self._core.begin_close(req.reason)
        await workflow.wait_condition(lambda: self._core.phase.is_final)
        return self._core.view()

    @destroy.validator
    def _validate_destroy(self, req: DestroyRequest) -> None:
        self._core.admit(Request.DESTROY, req)

    # --- owner-scoped updates: metadata, state, checkpoints, the log -------------------------

    @workflow.update
    async def update_metadata(self, req: MetadataRequest) -> SessionView:
        """Merge into the metadata (a None value removes a key), or replace it."""
        self._core.update_metadata(req)
        return self._core.view()

    @update_metadata.validator
    def _validate_metadata(self, req: MetadataRequest) -> None:
        self._core.admit(Request.CHANGE, req)
        merged_metadata(self._core.state.metadata, req.metadata, replace=req.replace)

    @workflow.update
    async def rename(self, req: RenameRequest) -> SessionView:
        """Give the session a new name (shown in the UI's list)."""
        self._core.rename(req)
        return self._core.view()

    @rename.validator
    def _validate_rename(self, req: RenameRequest) -> None:
        self._core.admit(Request.CHANGE, req)

    @workflow.update
    async def set_state(self, req: SetStateRequest) -> SessionView:
        """Pause (release the instance, keep the rest), mark idle, or resume now."""
        async with self._core.lock:
            if req.state == "paused":
                await self._core.pause("paused by request")
            elif req.state == "idle":
                if self._core.phase is Phase.ACTIVE:
                    self._core.move(Phase.IDLE)
            else:
                await self._core.resume(req.checkpoint_id)
            self._core.show_details()
        return self._core.view()

    @set_state.validator
    def _validate_set_state(self, req: SetStateRequest) -> None:
        self._core.admit(Request.CHANGE, req)
        self._core.reject_if_temporary("given a state")
        if req.checkpoint_id is not None:
            if req.state != "active":
                raise Rejected(ErrorCode.INVALID_INPUT, "a checkpoint can only be resumed from")
            find_checkpoint(self._core.state, req.checkpoint_id, self._core.id)

    @workflow.update
    async def save_checkpoint(self, req: SaveCheckpointRequest) -> Checkpoint:
        """Keep the caller's data with the instance's latest snapshot."""
        return self._core.save_checkpoint(req)

    @save_checkpoint.validator
    def _validate_save_checkpoint(self, req: SaveCheckpointRequest) -> None:
        self._core.admit(Request.CHANGE, req)
        check_new_checkpoint(self._core.state, req.data)

    @workflow.update
    async def delete_checkpoints(self, req: CheckpointRequest) -> int:
        """Delete one checkpoint, or all of them when none is named; answers how many went."""
        return self._core.delete_checkpoints(req)

    @delete_checkpoints.validator
    def _validate_delete_checkpoints(self, req: CheckpointRequest) -> None:
        self._core.check_owner(req)  # also once closed: a closed session's checkpoints can go
        if req.checkpoint_id is not None:
            find_checkpoint(self._core.state, req.checkpoint_id, self._core.id)

    @workflow.update
    async def append(self, req: AppendRequest) -> SessionEvent:
        """Add a message or a caller's event to the log."""
        return self._core.append(req)

    @append.validator
    def _validate_append(self, req: AppendRequest) -> None:
        self._core.admit(Request.CHANGE, req)
        check_entry(req)

    # --- signals: the same requests, fire-and-forget; a refusal goes to the log, and a request
    # that carries reply_to gets its answer signalled back ----------------------------------

    @workflow.signal(name="execute")
    async def execute_signal(self, req: ExecuteRequest) -> None:
        envelope = await self._executes.execute(req, signal=True)
        await self._replies.send("execute", req, envelope)

    @workflow.signal(name="refresh")
    async def refresh_signal(self, req: RefreshRequest) -> None:
        verdict = self._core.signal_admitted("refresh", Request.REFRESH, req)
        if verdict is Answer.RUN:
            self._core.refresh(req)
        await self._replies.send("refresh", req, self._answer(verdict))

    @workflow.signal(name="reinitialize")
    async def reinitialize_signal(self, req: ReinitializeRequest) -> None:
        verdict = self._core.signal_admitted("reinitialize", Request.REINITIALIZE, req)
        if verdict is Answer.RUN:
            result = await self._core.reinitialize(req)
            verdict = Envelope(code=result.code, message=result.message, data=result)
        await self._replies.send("reinitialize", req, self._answer(verdict))

    @workflow.signal(name="destroy")
    async def destroy_signal(self, req: DestroyRequest) -> None:
        verdict = self._core.signal_admitted("destroy", Request.DESTROY, req)
        if verdict is Answer.RUN:
            self._core.begin_close(req.reason)
        if req.reply_to is not None and not isinstance(verdict, Envelope):
            await workflow.wait_condition(lambda: self._core.phase.is_final)
        await self._replies.send("destroy", req, self._answer(verdict))

    @workflow.signal(name="append")
    async def append_signal(self, req: AppendRequest) -> None:
        if self._core.signal_admitted("append", Request.CHANGE, req) is Answer.RUN:
            self._core.append(req)

    def _answer(self, verdict: Answer | Envelope) -> Envelope:
        """A signalled request's answer: its refusal, or the session's view."""
        if isinstance(verdict, Envelope):
            return verdict
        return Envelope(data=self._core.view())

    @workflow.signal
    async def instance_released(self, released: InstanceReleased) -> None:
        """A stopping worker released the instance: the next call makes a new one, restored."""
        await self._core.instance_released(released)

    # --- queries -----------------------------------------------------------------------------

    @workflow.query
    def describe(self) -> SessionView:
        return self._core.view()

    @workflow.query
    def events(self, q: EventsQuery | None = None) -> EventsPage:
        return self._core.log.page(q or EventsQuery())

    @workflow.query
    def checkpoints(self) -> list[Checkpoint]:
        return list(self._core.state.checkpoints)

    def _should_continue(self) -> bool:
        return workflow.info().is_continue_as_new_suggested()
