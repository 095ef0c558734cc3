"""SessionWorkflow: one durable session of one resource type.

The workflow holds the session's state and its TTL; every call on the session instance goes to the
worker that holds it. It never fails a workflow task on a bad request: validators reject bad updates
before they reach history, and handlers turn every failure into an envelope.
"""

from __future__ import annotations

import asyncio
import builtins
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import SessionActivities
    from contract import (
        AppendRequest,
        CarriedState,
        Checkpoint,
        CheckpointRequest,
        CleanupInput,
        DestroyRequest,
        Envelope,
        EnvelopeMeta,
        ErrorCode,
        EventsPage,
        EventsQuery,
        ExecuteRequest,
        InitializeInput,
        InstanceInfo,
        InstanceReleased,
        MetadataRequest,
        OpenRequest,
        OwnedRequest,
        RefreshRequest,
        ReinitializeRequest,
        ReinitializeResult,
        RenameRequest,
        SaveCheckpointRequest,
        SessionEvent,
        SessionInput,
        SessionStateAttr,
        SessionStatus,
        SessionSummary,
        SessionView,
        SetStateRequest,
        ToolCallInput,
        ToolOutcome,
        split_tool_name,
    )
    from workflows.calls import (
        CONTINUING_AS_NEW,
        HEARTBEAT_TIMEOUT,
        LIFECYCLE_RETRY,
        MAX_CHECKPOINT_BYTES,
        MAX_CHECKPOINTS,
        MAX_ENTRY_BYTES,
        MAX_EVENTS,
        MAX_LOG_BYTES,
        NO_RETRY,
        SCHEDULE_TO_START,
        TOOL_TIMEOUT_MARGIN,
        Rejected,
        describe_failure,
        json_size,
        remember,
        tool_timeout,
        worker_lost,
    )
    from workflows.params_check import check_params
    from workflows.redaction import redact


#: Patch id: sessions started since this change initialize in a local activity.
INITIALIZE_LOCALLY = "initialize-locally"


@workflow.defn
class SessionWorkflow:
    @workflow.init
    def __init__(self, inp: SessionInput) -> None:
        self._input = inp
        self._state = inp.carried or CarriedState(
            config=inp.config, name=inp.name, metadata=inp.metadata
        )
        self._entry_sizes = [_entry_size(e) for e in self._state.events]
        self._lock = asyncio.Lock()
        self._closing: str | None = None
        self._released = False
        self._wake = False
        self._inflight: set[str] = set()
        self._last_envelope: Envelope | None = None
        self._temporary_session_id: str | None = None
        self._continuing = False

    # --- main loop ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: SessionInput) -> SessionSummary:
        if self._state.created_at is None:
            self._state.created_at = workflow.now()
            self._move_deadline()
        if inp.temporary:
            return await self._run_temporary()
        if not self._has_resource and self._state.status is SessionStatus.STARTING:
            self._set_status(SessionStatus.ACTIVE)  # a record: nothing to initialize
            self._show_details()
        if self._state.instance is None and self._state.status is SessionStatus.STARTING:
            async with self._lock:
                try:
                    await self._ensure_instance()
                except Rejected:
                    pass  # recorded; the session closes with status ERROR
        await self._hold_until_closing()
        return await self._close()

    async def _hold_until_closing(self) -> None:
        """The TTL loop: sleep until the deadline, which calls and refreshes keep moving."""
        while self._closing is None:
            if self._state.status is SessionStatus.ERROR:
                self._closing = "initialize failed"
                break
            remaining = (self._deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                if self._lock.locked():  # a call is running: it will move the deadline
                    await workflow.wait_condition(lambda: not self._lock.locked())
                    continue
                if self._input.on_expire == "pause" and self._state.status is not (
                    SessionStatus.PAUSED
                ):
                    async with self._lock:
                        await self._pause("expired; on_expire is pause")
                    continue
                self._closing = "expired"
                self._count("sessions_expired", "sessions closed at their deadline")
                break
            idle_in = self._idle_in()
            if idle_in is not None and idle_in <= 0:
                self._set_status(SessionStatus.IDLE)
                self._show_details()
                continue
            self._wake = False
            try:
                await workflow.wait_condition(
                    lambda: self._wake or self._closing is not None or self._should_continue(),
                    timeout=remaining if idle_in is None else min(remaining, idle_in),
                )
            except builtins.TimeoutError:
                continue
            if self._closing is None and self._should_continue():
                # Refuse new requests (clients retry them on the new run) so the queue drains.
                self._continuing = True
                await workflow.wait_condition(
                    lambda: not self._lock.locked() and workflow.all_handlers_finished()
                )
                workflow.continue_as_new(self._input.model_copy(update={"carried": self._state}))

    async def _run_temporary(self) -> SessionSummary:
        """One call, one instance, created and cleaned up inside a single activity."""
        self._set_status(SessionStatus.ACTIVE)
        try:
            await workflow.wait_condition(
                lambda: self._state.call_count > 0 or self._closing is not None,
                timeout=self._input.ttl_seconds,
            )
        except builtins.TimeoutError:
            self._closing = "expired"
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._closing = self._closing or "temporary call done"
        return await self._close()

    async def _close(self) -> SessionSummary:
        async with self._lock:
            last_id = self._state.instance.session_id if self._state.instance else None
            await self._release_instance()
            self._released = True
            final = SessionStatus.EXPIRED if self._closing == "expired" else SessionStatus.CLOSED
            if self._state.status is not SessionStatus.ERROR:
                self._set_status(final)
            self._record("closed", message=self._closing or "")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return SessionSummary(
            sandbox_id=self._input.sandbox_id,
            resource_type=self._input.resource_type,
            status=self._state.status,
            reason=self._closing or "",
            call_count=self._state.call_count,
            last_session_id=last_id,
            last_envelope=self._last_envelope,
        )

    # --- updates -----------------------------------------------------------------------------

    @workflow.update
    async def open(self, req: OpenRequest) -> SessionView:
        """Wait until the session's first instance is ready (or failed) and describe it."""
        await workflow.wait_condition(lambda: self._state.status is not SessionStatus.STARTING)
        return self._view(created=bool(req.request_id) and req.request_id == self._input.opened_by)

    @workflow.update
    async def execute(self, req: ExecuteRequest) -> Envelope:
        """Run one tool call on the session's instance; the answer is always an envelope."""
        return await self._execute(req)

    @execute.validator
    def _validate_execute(self, req: ExecuteRequest) -> None:
        self._reject_if_moving()
        self._check(req)

    @workflow.update
    async def refresh(self, req: RefreshRequest) -> SessionView:
        """Move the deadline: now + TTL (optionally a new TTL)."""
        self._refresh(req)
        return self._view()

    @refresh.validator
    def _validate_refresh(self, req: RefreshRequest) -> None:
        self._reject_if_moving()
        self._reject_if_closed()
        self._check_owner(req)

    @workflow.update
    async def reinitialize(self, req: ReinitializeRequest) -> ReinitializeResult:
        """Replace the instance with a new one made from a new config."""
        return await self._reinitialize(req)

    @reinitialize.validator
    def _validate_reinitialize(self, req: ReinitializeRequest) -> None:
        self._reject_if_moving()
        self._reject_if_closed()
        if self._input.temporary:
            raise Rejected(ErrorCode.INVALID_INPUT, "a temporary session cannot be reinitialized")

    @workflow.update
    async def destroy(self, req: DestroyRequest) -> SessionView:
        """Clean the instance up and close the session; idempotent."""
        self._begin_close(req.reason)
        await workflow.wait_condition(lambda: self._released)
        return self._view()

    @destroy.validator
    def _validate_destroy(self, req: DestroyRequest) -> None:
        self._check_owner(req)

    # --- owner-scoped updates: metadata, state, checkpoints, the log -------------------------

    @workflow.update
    async def update_metadata(self, req: MetadataRequest) -> SessionView:
        """Merge into the metadata (a None value removes a key), or replace it."""
        merged = {} if req.replace else dict(self._state.metadata)
        merged.update(req.metadata)
        self._state.metadata = {k: v for k, v in merged.items() if v is not None}
        self._record("metadata", message=", ".join(sorted(req.metadata)) or "cleared")
        return self._view()

    @update_metadata.validator
    def _validate_metadata(self, req: MetadataRequest) -> None:
        self._check_open_and_owned(req)
        if json_size(req.metadata) > MAX_ENTRY_BYTES:
            raise Rejected(
                ErrorCode.TOO_LARGE, f"metadata is over the limit of {MAX_ENTRY_BYTES} bytes"
            )

    @workflow.update
    async def rename(self, req: RenameRequest) -> SessionView:
        previous, self._state.name = self._state.name, req.name
        self._record("rename", message=f"{previous!r} -> {req.name!r}")
        self._show_details()
        return self._view()

    @rename.validator
    def _validate_rename(self, req: RenameRequest) -> None:
        self._check_open_and_owned(req)

    @workflow.update
    async def set_state(self, req: SetStateRequest) -> SessionView:
        """Pause (release the instance, keep the rest), mark idle, or resume now."""
        async with self._lock:
            if req.state == "paused":
                await self._pause("paused by request")
            elif req.state == "idle":
                if self._state.status is SessionStatus.ACTIVE:
                    self._set_status(SessionStatus.IDLE)
            else:
                await self._resume(req.checkpoint_id)
            self._show_details()
        return self._view()

    @set_state.validator
    def _validate_set_state(self, req: SetStateRequest) -> None:
        self._check_open_and_owned(req)
        if self._input.temporary:
            raise Rejected(ErrorCode.INVALID_INPUT, "a temporary session has no states to set")
        if req.checkpoint_id is not None:
            if req.state != "active":
                raise Rejected(ErrorCode.INVALID_INPUT, "a checkpoint can only be resumed from")
            self._find_checkpoint(req.checkpoint_id)

    @workflow.update
    async def save_checkpoint(self, req: SaveCheckpointRequest) -> Checkpoint:
        """Keep the caller's data with the instance's latest snapshot."""
        checkpoint = Checkpoint(
            checkpoint_id=f"ckpt_{workflow.uuid4().hex[:12]}",
            created_at=workflow.now(),
            label=req.label,
            data=req.data,
            snapshot=self._state.snapshot,
            size_bytes=json_size(req.data),
        )
        self._state.checkpoints.append(checkpoint)
        self._record("checkpoint", message=f"saved {checkpoint.checkpoint_id} {req.label}".strip())
        return checkpoint

    @save_checkpoint.validator
    def _validate_save_checkpoint(self, req: SaveCheckpointRequest) -> None:
        self._check_open_and_owned(req)
        size = json_size(req.data)
        if size > MAX_CHECKPOINT_BYTES:
            raise Rejected(
                ErrorCode.TOO_LARGE,
                f"checkpoint data is {size} bytes; the limit is {MAX_CHECKPOINT_BYTES} bytes",
            )
        if len(self._state.checkpoints) >= MAX_CHECKPOINTS:
            raise Rejected(
                ErrorCode.QUOTA_EXCEEDED,
                f"session has {MAX_CHECKPOINTS} checkpoints, the most it keeps; "
                "delete one or clear them first",
            )

    @workflow.update
    async def delete_checkpoints(self, req: CheckpointRequest) -> int:
        """Delete one checkpoint, or all of them when none is named; answers how many went."""
        before = len(self._state.checkpoints)
        self._state.checkpoints = [
            c
            for c in self._state.checkpoints
            if req.checkpoint_id is not None and c.checkpoint_id != req.checkpoint_id
        ]
        deleted = before - len(self._state.checkpoints)
        self._record("checkpoint", message=f"deleted {req.checkpoint_id or 'all'} ({deleted})")
        return deleted

    @delete_checkpoints.validator
    def _validate_delete_checkpoints(self, req: CheckpointRequest) -> None:
        self._check_owner(req)
        if req.checkpoint_id is not None:
            self._find_checkpoint(req.checkpoint_id)

    @workflow.update
    async def append(self, req: AppendRequest) -> SessionEvent:
        """Add a message or a caller's event to the log."""
        return self._append(req)

    @append.validator
    def _validate_append(self, req: AppendRequest) -> None:
        self._check_open_and_owned(req)
        _check_entry(req)

    # --- signals: the same requests, fire-and-forget ------------------------------------------

    @workflow.signal(name="execute")
    async def execute_signal(self, req: ExecuteRequest) -> None:
        await self._execute(req)

    @workflow.signal(name="refresh")
    async def refresh_signal(self, req: RefreshRequest) -> None:
        if not self._is_closed() and self._owned_by(req):
            self._refresh(req)

    @workflow.signal(name="reinitialize")
    async def reinitialize_signal(self, req: ReinitializeRequest) -> None:
        if not self._is_closed() and not self._input.temporary:
            await self._reinitialize(req)

    @workflow.signal
    async def instance_released(self, released: InstanceReleased) -> None:
        """A stopping worker released the instance: the next call makes a new one, restored."""
        async with self._lock:
            instance = self._state.instance
            if instance is None or instance.session_id != released.session_id:
                return  # already replaced
            self._state.instance = None
            if released.snapshot is not None:
                self._state.snapshot = released.snapshot
            self._record("released", session_id=released.session_id, message=released.reason)
            self._show_details()

    @workflow.signal(name="destroy")
    async def destroy_signal(self, req: DestroyRequest) -> None:
        if self._owned_by(req):
            self._begin_close(req.reason)

    @workflow.signal(name="append")
    async def append_signal(self, req: AppendRequest) -> None:
        try:
            self._check_open_and_owned(req)
            _check_entry(req)
        except Rejected as exc:  # a signal has no answer: the refusal goes to the log
            self._record("rejected", code=exc.code, message=f"append: {exc.message}")
            return
        self._append(req)

    # --- queries -----------------------------------------------------------------------------

    @workflow.query
    def describe(self) -> SessionView:
        return self._view()

    @workflow.query
    def events(self, q: EventsQuery | None = None) -> EventsPage:
        q = q or EventsQuery()
        selected = [
            e
            for e in self._state.events
            if (q.start_id is None or e.id >= q.start_id)
            and (q.end_id is None or e.id <= q.end_id)
            and (q.kind is None or e.kind == q.kind)
        ]
        if q.reverse:
            selected.reverse()
        return EventsPage(
            events=selected[: q.limit],
            has_more=len(selected) > q.limit,
            dropped=self._state.dropped_events,
        )

    @workflow.query
    def checkpoints(self) -> list[Checkpoint]:
        return list(self._state.checkpoints)

    # --- request handling --------------------------------------------------------------------

    async def _execute(self, req: ExecuteRequest) -> Envelope:
        request_id = req.request_id or str(workflow.uuid4())
        remembered = self._state.recent_results.get(request_id)
        if remembered is not None:
            return remembered
        if request_id in self._inflight:  # a signal repeating a running request: answer once
            await workflow.wait_condition(lambda: request_id in self._state.recent_results)
            return self._state.recent_results[request_id]
        self._inflight.add(request_id)
        started = workflow.now()
        try:
            async with self._lock:
                envelope = await self._execute_locked(req, request_id)
        finally:
            self._inflight.discard(request_id)
        remember(self._state.recent_results, request_id, envelope)
        self._measure_execute(envelope, workflow.now() - started)
        return envelope

    def _measure_execute(self, envelope: Envelope, took: timedelta) -> None:
        """Execute latency (workflow time: includes waiting for the session) and errors."""
        meter = workflow.metric_meter().with_additional_attributes(
            {"resource_type": self._input.resource_type}
        )
        meter.create_histogram_timedelta(
            "sessions_execute_latency", "execute, from the update to its answer", "ms"
        ).record(took)
        if envelope.code:
            meter.create_counter(
                "sessions_execute_errors", "executes answered with a non-zero code"
            ).add(1, {"code": str(envelope.code)})

    def _count(self, name: str, description: str) -> None:
        workflow.metric_meter().create_counter(name, description).add(
            1, {"resource_type": self._input.resource_type}
        )

    async def _execute_locked(self, req: ExecuteRequest, request_id: str) -> Envelope:
        try:
            self._check(req)
            if not self._input.temporary:
                await self._ensure_instance()
                self._check(req)  # the tool catalog is known once an instance exists
        except Rejected as exc:
            return self._finish_call(
                req, request_id, ToolOutcome(code=exc.code, message=exc.message)
            )
        self._move_deadline()
        outcome = await self._call_tool(req, request_id)
        return self._finish_call(req, request_id, outcome)

    async def _call_tool(self, req: ExecuteRequest, request_id: str) -> ToolOutcome:
        timeout = tool_timeout(req.params) + TOOL_TIMEOUT_MARGIN
        if self._input.temporary:
            session_id = self._new_session_id()
            self._temporary_session_id = session_id
            call = ToolCallInput(
                session_id=session_id,
                tool=req.tool,
                params=req.params,
                request_id=request_id,
                initialize=self._initialize_input(session_id, self._state.config),
            )
            try:
                return await workflow.execute_activity_method(
                    SessionActivities.call_tool,
                    call,
                    start_to_close_timeout=timedelta(seconds=timeout + 60),
                    retry_policy=NO_RETRY,
                )
            except ActivityError as exc:
                return ToolOutcome(code=ErrorCode.INTERNAL, message=describe_failure(exc))
        instance = self._state.instance
        assert instance is not None
        call = ToolCallInput(
            session_id=instance.session_id, tool=req.tool, params=req.params, request_id=request_id
        )
        try:
            outcome = await workflow.execute_activity_method(
                SessionActivities.call_tool,
                call,
                task_queue=instance.task_queue,
                schedule_to_start_timeout=SCHEDULE_TO_START,
                start_to_close_timeout=timedelta(seconds=timeout),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=NO_RETRY,
            )
        except ActivityError as exc:
            if not worker_lost(exc):
                return ToolOutcome(code=ErrorCode.INTERNAL, message=describe_failure(exc))
            outcome = ToolOutcome(code=ErrorCode.RESOURCE_LOST, message=describe_failure(exc))
        if outcome.snapshot is not None:
            self._state.snapshot = outcome.snapshot
        if outcome.code != ErrorCode.RESOURCE_LOST:
            return outcome
        recovered = await self._recover(instance, outcome)
        if recovered.code == ErrorCode.RESOURCE_LOST and self._is_idempotent(req.tool):
            # Safe to repeat: run it on the new instance instead of asking the caller to.
            self._record("retry", request_id=request_id, tool=req.tool, message="after recovery")
            return await self._call_tool(req, request_id)
        return recovered

    def _is_idempotent(self, tool: str) -> bool:
        instance = self._state.instance
        return bool(instance) and any(
            t.name == tool and t.idempotent for t in (instance.tools if instance else [])
        )

    async def _recover(self, lost: InstanceInfo, outcome: ToolOutcome) -> ToolOutcome:
        """The worker holding the instance is gone: make a new instance and tell the caller."""
        self._record(
            "resource_lost", code=outcome.code, message=outcome.message, session_id=lost.session_id
        )
        self._state.instance = None
        try:
            await self._ensure_instance()
        except Rejected as exc:
            return ToolOutcome(code=exc.code, message=f"resource lost: {exc.message}")
        new = self._state.instance
        if new is None:
            return ToolOutcome(
                code=ErrorCode.RESOURCE_LOST,
                message=f"resource lost and could not be re-initialized: {outcome.message}",
            )
        self._count("sessions_recovered", "instances re-created after their worker was lost")
        self._record(
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

    def _finish_call(self, req: ExecuteRequest, request_id: str, outcome: ToolOutcome) -> Envelope:
        self._state.call_count += 1
        self._touch()
        self._move_deadline()
        if outcome.shared:  # a shared tool reached through a temporary session uses none
            session_id = None
        elif self._input.temporary:
            session_id = self._temporary_session_id
        else:
            session_id = self._state.instance.session_id if self._state.instance else None
        envelope = Envelope(
            code=outcome.code,
            message=outcome.message,
            data=outcome.data,
            meta=EnvelopeMeta(
                tool=req.tool,
                resource_type=self._input.resource_type,
                session_id=session_id,
                temporary_session=self._input.temporary and not outcome.shared,
                request_id=request_id,
                execution_time_ms=outcome.execution_time_ms,
                workflow_id=workflow.info().workflow_id,
                shared=outcome.shared,
            ),
        )
        self._record(
            "execute",
            request_id=request_id,
            tool=req.tool,
            code=outcome.code,
            message=outcome.message if outcome.code else "",
            session_id=session_id,
            content={"params": redact(req.params)},
        )
        self._last_envelope = envelope
        self._show_details()
        return envelope

    def _check(self, req: ExecuteRequest) -> None:
        """Raise Rejected for a request that must not run; pure, so validators can use it."""
        self._reject_if_closed()
        self._check_owner(req)
        if not self._has_resource:
            raise Rejected(
                ErrorCode.NO_SESSION,
                f"session {workflow.info().workflow_id} has no resource to run {req.tool!r} on "
                "(it is a conversation record)",
            )
        try:
            resource, _ = split_tool_name(req.tool)
        except ValueError as exc:
            raise Rejected(ErrorCode.UNKNOWN_TOOL, str(exc)) from None
        if resource != self._input.resource_type:
            raise Rejected(
                ErrorCode.UNKNOWN_TOOL,
                f"tool {req.tool!r} is not a {self._input.resource_type} tool",
            )
        instance = self._state.instance
        if req.session_id is not None and (
            instance is None or instance.session_id != req.session_id
        ):
            current = instance.session_id if instance else "none"
            raise Rejected(
                ErrorCode.NO_SESSION,
                f"no session {req.session_id!r} in {workflow.info().workflow_id} "
                f"(current: {current})",
            )
        if instance is None or not instance.tools:
            return
        spec = next((t for t in instance.tools if t.name == req.tool), None)
        if spec is None:
            known = ", ".join(t.name for t in instance.tools)
            raise Rejected(
                ErrorCode.UNKNOWN_TOOL, f"unknown tool {req.tool!r} (available: {known})"
            )
        problem = check_params(req.tool, spec.params_schema, req.params)
        if problem is not None:
            raise Rejected(*problem)

    def _reject_if_moving(self) -> None:
        """Validators only: while draining for continue-as-new, new requests go to the next run."""
        if self._continuing:
            raise ApplicationError(
                "session is continuing as new; retry the request",
                type=CONTINUING_AS_NEW,
                non_retryable=True,
            )

    def _reject_if_closed(self) -> None:
        if self._is_closed():
            state = self._state.status.value if self._state.status.is_final else "closing"
            raise Rejected(
                ErrorCode.SESSION_CLOSED,
                f"session {workflow.info().workflow_id} is {state} ({self._closing or 'closed'})",
            )

    def _check_owner(self, req: OwnedRequest) -> None:
        if not self._owned_by(req):
            raise Rejected(
                ErrorCode.PERMISSION_DENIED,
                f"permission denied: user {req.user_id!r} does not own session "
                f"{workflow.info().workflow_id}",
            )

    def _owned_by(self, req: OwnedRequest) -> bool:
        """A request naming no user is the owner's own (the Sandbox, operators)."""
        return req.user_id is None or req.user_id == self._input.user_id

    def _check_open_and_owned(self, req: OwnedRequest) -> None:
        self._reject_if_moving()
        self._reject_if_closed()
        self._check_owner(req)

    def _find_checkpoint(self, checkpoint_id: str) -> Checkpoint:
        for checkpoint in self._state.checkpoints:
            if checkpoint.checkpoint_id == checkpoint_id:
                return checkpoint
        raise Rejected(
            ErrorCode.NOT_FOUND,
            f"no checkpoint {checkpoint_id!r} in session {workflow.info().workflow_id}",
        )

    def _is_closed(self) -> bool:
        return self._closing is not None or self._state.status.is_final

    def _refresh(self, req: RefreshRequest) -> None:
        if req.ttl_seconds is not None:
            self._input.ttl_seconds = req.ttl_seconds
        before = self._deadline
        self._touch()
        self._move_deadline()
        self._wake = self._deadline < before  # only a shorter deadline needs a new timer
        self._record("refresh", message=f"deadline {self._deadline.isoformat()}")
        self._show_details()

    async def _reinitialize(self, req: ReinitializeRequest) -> ReinitializeResult:
        async with self._lock:
            old = self._state.instance
            try:
                new = await self._start_instance(req.config)
            except (ActivityError, ApplicationError) as exc:  # local activities raise the latter
                message = describe_failure(exc)
                self._record("reinitialize", code=ErrorCode.INITIALIZE_FAILED, message=message)
                return ReinitializeResult(
                    status="error",
                    old_session_id=old.session_id if old else None,
                    config_applied={},
                    code=ErrorCode.INITIALIZE_FAILED,
                    message=f"{message}; the current instance was kept",
                )
            # Only once the new instance exists is the old one released.
            if old is not None:
                await self._cleanup(old)
            self._state.instance = new
            self._state.config = req.config
            self._state.snapshot = None  # a new config starts from a clean state
            self._set_status(SessionStatus.ACTIVE)
            self._move_deadline()
            self._record(
                "reinitialize",
                session_id=new.session_id,
                message=f"{old.session_id if old else None} -> {new.session_id}",
            )
            self._show_details()
            return ReinitializeResult(
                status="success",
                old_session_id=old.session_id if old else None,
                new_session_id=new.session_id,
                config_applied=req.config,
            )

    def _append(self, req: AppendRequest) -> SessionEvent:
        self._touch()
        return self._record(req.kind, role=req.role, content=req.content, message=req.message)

    async def _pause(self, reason: str) -> None:
        """Release the instance and keep the record; call with the lock held."""
        if self._state.status is SessionStatus.PAUSED:
            return
        await self._release_instance()
        self._set_status(SessionStatus.PAUSED)
        self._state.deadline = workflow.now() + timedelta(seconds=self._input.paused_ttl_seconds)
        self._record("pause", message=reason)
        self._show_details()

    async def _resume(self, checkpoint_id: str | None) -> None:
        """Make the session ACTIVE now; from a checkpoint, on a new instance at its snapshot."""
        if checkpoint_id is not None:
            self._state.snapshot = self._find_checkpoint(checkpoint_id).snapshot
            await self._release_instance()
            self._record("resume", message=f"from checkpoint {checkpoint_id}")
        if self._has_resource:
            await self._ensure_instance()
        elif not self._state.status.is_final:
            self._set_status(SessionStatus.ACTIVE)
        self._touch()
        self._move_deadline()

    def _begin_close(self, reason: str) -> None:
        if self._closing is None and not self._state.status.is_final:
            self._closing = reason
            self._record("destroy", message=reason)

    # --- instances ---------------------------------------------------------------------------

    async def _ensure_instance(self) -> None:
        """Create the instance if there is none; call with the lock held."""
        if not self._has_resource or self._state.instance is not None or self._closing is not None:
            return
        try:
            # After a lost or moved instance the snapshot brings the new one back to its state.
            self._state.instance = await self._start_instance(
                self._state.config, self._state.snapshot
            )
        except (ActivityError, ApplicationError) as exc:  # local activities raise the latter
            message = describe_failure(exc)
            self._state.error = message
            self._set_status(SessionStatus.ERROR)
            self._record("initialize", code=ErrorCode.INITIALIZE_FAILED, message=message)
            raise Rejected(ErrorCode.INITIALIZE_FAILED, message) from None
        self._set_status(SessionStatus.ACTIVE)
        instance = self._state.instance
        restored = " (restored from snapshot)" if instance.restored else ""
        self._record(
            "initialize", session_id=instance.session_id, message=f"on {instance.worker}{restored}"
        )
        self._show_details()

    async def _start_instance(
        self, config: dict[str, Any], restore: dict[str, Any] | None = None
    ) -> InstanceInfo:
        session_id = self._new_session_id()
        inp = self._initialize_input(session_id, config, restore)
        if workflow.patched(INITIALIZE_LOCALLY):
            # On the worker running this workflow task: no task queue round trip, and that
            # worker keeps the instance (its pinned queue is in the answer).
            return await workflow.execute_local_activity_method(
                SessionActivities.initialize,
                inp,
                start_to_close_timeout=timedelta(seconds=120),
                retry_policy=LIFECYCLE_RETRY,
            )
        return await workflow.execute_activity_method(
            SessionActivities.initialize,
            inp,
            start_to_close_timeout=timedelta(seconds=120),
            retry_policy=LIFECYCLE_RETRY,
        )

    async def _release_instance(self) -> None:
        instance, self._state.instance = self._state.instance, None
        if instance is not None:
            await self._cleanup(instance)

    async def _cleanup(self, instance: InstanceInfo) -> None:
        try:
            await workflow.execute_activity_method(
                SessionActivities.cleanup,
                CleanupInput(
                    session_id=instance.session_id, resource_type=self._input.resource_type
                ),
                task_queue=instance.task_queue,
                schedule_to_start_timeout=SCHEDULE_TO_START,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=2),
            )
            self._record("cleanup", session_id=instance.session_id)
        except ActivityError as exc:
            # The worker is gone, and the instance with it: nothing is left to release.
            self._record(
                "cleanup",
                code=ErrorCode.RESOURCE_LOST,
                session_id=instance.session_id,
                message=describe_failure(exc),
            )

    def _initialize_input(
        self, session_id: str, config: dict[str, Any], restore: dict[str, Any] | None = None
    ) -> InitializeInput:
        return InitializeInput(
            sandbox_id=self._input.sandbox_id,
            resource_type=self._input.resource_type,
            session_id=session_id,
            config=config,
            workflow_id=workflow.info().workflow_id,
            restore=restore,
        )

    def _new_session_id(self) -> str:
        return f"{self._input.resource_type}-{workflow.uuid4().hex[:12]}"

    # --- state helpers -----------------------------------------------------------------------

    @property
    def _has_resource(self) -> bool:
        return bool(self._input.resource_type)

    def _touch(self) -> None:
        """Something happened: the session is no longer idle."""
        self._state.last_activity = workflow.now()
        if self._state.status is SessionStatus.IDLE:
            self._set_status(SessionStatus.ACTIVE)

    def _idle_in(self) -> float | None:
        """Seconds until an ACTIVE session turns IDLE; None when it cannot now."""
        idle = self._input.idle_seconds
        if idle is None or self._state.status is not SessionStatus.ACTIVE or self._lock.locked():
            return None
        since = self._state.last_activity or self._state.created_at or workflow.now()
        return idle - (workflow.now() - since).total_seconds()

    @property
    def _deadline(self) -> Any:
        assert self._state.deadline is not None
        return self._state.deadline

    def _move_deadline(self) -> None:
        self._state.deadline = workflow.now() + timedelta(seconds=self._input.ttl_seconds)

    def _should_continue(self) -> bool:
        return workflow.info().is_continue_as_new_suggested()

    def _set_status(self, status: SessionStatus) -> None:
        if status is self._state.status:
            return
        previous, self._state.status = self._state.status, status
        if status is SessionStatus.ACTIVE and self._input.idle_seconds is not None:
            self._wake = True  # the TTL loop arms the idle timer again
        if self._input.search_attributes:
            workflow.upsert_search_attributes([SessionStateAttr.value_set(status.value)])
        self._record("state", message=f"{previous.value} -> {status.value}")

    def _record(self, kind: str, **fields: Any) -> SessionEvent:
        """Append to the bounded log; the oldest entries leave it (they stay in the history
        of the run that recorded them, as the request that made them)."""
        event = SessionEvent(id=self._state.next_event_id, at=workflow.now(), kind=kind, **fields)
        self._state.next_event_id += 1
        self._state.events.append(event)
        self._entry_sizes.append(_entry_size(event))
        excess = max(0, len(self._state.events) - MAX_EVENTS)
        kept = sum(self._entry_sizes[excess:])
        while kept > MAX_LOG_BYTES and excess < len(self._entry_sizes) - 1:
            kept -= self._entry_sizes[excess]
            excess += 1
        if excess:
            del self._state.events[:excess]
            del self._entry_sizes[:excess]
            self._state.dropped_events += excess
        return event

    def _show_details(self) -> None:
        instance = self._state.instance
        where = (
            f"instance `{instance.session_id}` on `{instance.worker}`"
            if instance
            else "no instance"
        )
        last = self._last_envelope
        last_call = f" · last: `{last.meta.tool}` → {last.code}" if last else ""
        workflow.set_current_details(
            f"{self._title()}, {self._state.status.value} · {where} · "
            f"{self._state.call_count} calls · deadline {self._deadline.isoformat()}{last_call}"
        )

    def _title(self) -> str:
        kind = f"**{self._input.resource_type}** session" if self._has_resource else "record"
        name = f" “{self._state.name}”" if self._state.name else ""
        owner = f" of {self._input.user_id}" if self._input.user_id else ""
        return f"{kind}{name}{owner}"

    def _view(self, *, created: bool = False) -> SessionView:
        instance = self._state.instance
        return SessionView(
            workflow_id=workflow.info().workflow_id,
            sandbox_id=self._input.sandbox_id,
            resource_type=self._input.resource_type,
            status=self._state.status,
            session_id=instance.session_id if instance else None,
            worker=instance.worker if instance else None,
            created=created,
            created_at=self._state.created_at,
            deadline=self._state.deadline,
            ttl_seconds=self._input.ttl_seconds,
            call_count=self._state.call_count,
            config=self._state.config,
            user_id=self._input.user_id,
            agent_id=self._input.agent_id,
            temporary=self._input.temporary,
            tools=[t.name for t in instance.tools] if instance else [],
            message=self._state.error or self._closing or "",
            name=self._state.name,
            metadata=self._state.metadata,
            last_activity=self._state.last_activity,
            checkpoint_count=len(self._state.checkpoints),
            on_expire=self._input.on_expire,
        )


ROLES = frozenset({"user", "assistant", "system", "tool"})


def _entry_size(event: SessionEvent) -> int:
    return len(event.message) + (json_size(event.content) if event.content is not None else 0)


def _check_entry(req: AppendRequest) -> None:
    if req.kind == "message" and req.role not in ROLES:
        raise Rejected(
            ErrorCode.INVALID_INPUT,
            f"a message needs a role, one of {', '.join(sorted(ROLES))} (got {req.role!r})",
        )
    size = json_size(req.content)
    if size > MAX_ENTRY_BYTES:
        raise Rejected(
            ErrorCode.TOO_LARGE,
            f"log entry content is {size} bytes; the limit is {MAX_ENTRY_BYTES} bytes",
        )
