"""SessionCore: a session's state and every change of it, for SessionWorkflow's handlers.

Deterministic helper (no handlers of its own): the phase (``workflows.phase``), the clock, the
event log, the instance's lifecycle (create, release, pause, resume, reinitialize, lost), the
caller's data (metadata, name, checkpoints), answered calls and admission of requests. The
workflow class keeps the handlers, validators and the run loop; ``ExecutePath`` runs a call and
hands its answer here. Nothing else assigns to ``state`` but ``workflows.idle_suspend``, the
suspend step.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.contrib.workflow_streams import WorkflowStreamState
from temporalio.exceptions import ApplicationError

from contract import (
    AppendRequest,
    CarriedState,
    Checkpoint,
    CheckpointRequest,
    DeadlineAttr,
    Envelope,
    ErrorCode,
    InstanceInfo,
    InstanceReleased,
    MetadataRequest,
    OwnedRequest,
    RefreshRequest,
    ReinitializeRequest,
    ReinitializeResult,
    RenameRequest,
    SaveCheckpointRequest,
    SessionEvent,
    SessionInput,
    SessionNameAttr,
    SessionStateAttr,
    SessionStatus,
    SessionView,
    ToolOutcome,
)
from contract.limits import CONTINUING_AS_NEW, MAX_REMEMBERED_RESULTS, json_size
from workflows import instance_activities
from workflows.checks import check_entry, check_owner, find_checkpoint, merged_metadata
from workflows.clock import Clock
from workflows.event_log import EventLog
from workflows.failures import Rejected
from workflows.phase import Answer, Lifecycle, Phase, Request, answer
from workflows.redaction import redact
from workflows.remembered_answers import remember
from workflows.views import current_details, session_view

DEADLINE_SLACK = timedelta(seconds=60)


class SessionCore:
    def __init__(self, inp: SessionInput) -> None:
        self.input = inp
        # A forked session starts with its parent's snapshot: its first instance restores it.
        self.state = inp.carried or CarriedState(
            config=inp.config, name=inp.name, metadata=inp.metadata, snapshot=inp.restore
        )
        self.life = Lifecycle.resume(self.state.status)
        self.clock = Clock(inp, self.state)
        self.log = EventLog(self.state)
        #: Held around everything that awaits an activity: one call on the instance at a time.
        self.lock = asyncio.Lock()
        self.last_envelope: Envelope | None = None
        self.temporary_session_id: str | None = None
        # What the search attributes show now (they carry over continue-as-new).
        self._shown_deadline: datetime | None = None
        # What a new run's start shows (the client sets SessionDeadline at start, which saves an
        # upsert); a continued run upserts its deadline once.
        self._start_deadline = (
            None if inp.carried else workflow.info().typed_search_attributes.get(DeadlineAttr)
        )
        self._shown_name = self.state.name

    # --- admission -----------------------------------------------------------------------------

    def admit(self, request: Request, req: OwnedRequest, *, signal: bool = False) -> Answer:
        """Raise for a request this phase refuses (or another user's); else how to answer it."""
        verdict = answer(request, self.phase, signal=signal)
        if verdict is Answer.RETRY:
            raise ApplicationError(
                "session is continuing as new; retry the request",
                type=CONTINUING_AS_NEW,
                non_retryable=True,
            )
        self.check_owner(req)
        if verdict is Answer.CLOSED:
            state = self.life.status.value if self.phase.is_final else "closing"
            reason = self.life.reason or "closed"
            raise Rejected(ErrorCode.SESSION_CLOSED, f"session {self.id} is {state} ({reason})")
        return verdict

    def signal_admitted(self, name: str, request: Request, req: OwnedRequest) -> Answer | Envelope:
        """RUN, DONE, or the refusal: a refused signal is recorded and changes nothing else (its
        envelope is the answer, for a request that asked for one by ``reply_to``)."""
        try:
            verdict = self.admit(request, req, signal=True)
            if request is Request.REINITIALIZE:
                self.reject_if_temporary("reinitialized")
            if isinstance(req, AppendRequest):
                check_entry(req)
        except ApplicationError as exc:
            self.record("rejected", code=_code(exc), message=f"{name}: {exc.message}")
            return Envelope(code=_code(exc), message=exc.message)
        return verdict

    def check_owner(self, req: OwnedRequest) -> None:
        check_owner(req, self.input.user_id, self.id)

    def reject_if_temporary(self, what: str) -> None:
        if self.input.temporary:
            raise Rejected(ErrorCode.INVALID_INPUT, f"a temporary session cannot be {what}")

    def refresh(self, req: RefreshRequest) -> None:
        if req.ttl_seconds is not None:
            self.input.ttl_seconds = req.ttl_seconds
        self.touch()
        self.clock.move_deadline()
        self.record("refresh", message=f"deadline {self.clock.deadline.isoformat()}")
        self.show_details()

    async def reinitialize(self, req: ReinitializeRequest) -> ReinitializeResult:
        async with self.lock:
            old = self.state.instance
            old_id = old.session_id if old else None
            if not self.phase.is_open:  # closed while waiting for the lock
                message = f"session {self.id} is closing; nothing was reinitialized"
                return ReinitializeResult(
                    status="error", old_session_id=old_id, code=ErrorCode.SESSION_CLOSED,
                    message=message,
                )  # fmt: skip
            try:
                new = await instance_activities.start_instance(self.input, req.config)
            except Rejected as exc:
                self.record("reinitialize", code=exc.code, message=exc.message)
                return ReinitializeResult(
                    status="error", old_session_id=old_id, code=exc.code,
                    message=f"{exc.message}; the current instance was kept",
                )  # fmt: skip
            # Only once the new instance exists is the old one released.
            if old is not None:
                await self.release(old)
            self.state.instance = new
            self.state.config = req.config
            self.state.snapshot = None  # a new config starts from a clean state
            self.move(Phase.ACTIVE)
            self.clock.move_deadline()
            self.record(
                "reinitialize", session_id=new.session_id, message=f"{old_id} -> {new.session_id}"
            )
            self.show_details()
            return ReinitializeResult(
                status="success",
                old_session_id=old_id,
                new_session_id=new.session_id,
                config_applied=redact(req.config, cut=False),
            )

    def append(self, req: AppendRequest) -> SessionEvent:
        self.touch()
        return self.record(req.kind, role=req.role, content=req.content, message=req.message)

    async def pause(self, reason: str) -> None:
        """Release the instance and keep the record; call with the lock held. A suspended
        session (paused already) now keeps its record ``paused_ttl_seconds`` more."""
        if self.phase is Phase.PAUSED and self.state.suspended:
            self.state.suspended = False
            self.clock.move_deadline(self.input.paused_ttl_seconds)
            self.record("pause", message=reason)
            self.show_details()
            return
        if self.phase is Phase.PAUSED or not self.life.can_move(Phase.PAUSED):
            return
        await self.release_instance()
        self.move(Phase.PAUSED)
        self.clock.move_deadline(self.input.paused_ttl_seconds)
        self.record("pause", message=reason)
        self.show_details()

    def resumed_by_call(self) -> None:
        """A call found the session PAUSED and its new instance runs it."""
        self.state.suspended = False
        self.record("resume", message="by a call (auto_resume)")

    async def fresh_snapshot(self) -> None:
        """Keep the instance's state now (what background processes wrote since the last call
        too); a worker that cannot answer leaves the last call's snapshot."""
        instance = self.state.instance
        if instance is None:
            return
        outcome = await instance_activities.snapshot(instance, self.input.resource_type)
        if outcome.snapshot is not None:
            self.keep_snapshot(outcome.snapshot)
        elif outcome.code:
            self.record("snapshot", code=outcome.code, message=outcome.message[:500])

    async def resume(self, checkpoint_id: str | None) -> None:
        """Make the session ACTIVE now; from a checkpoint, on a new instance at its snapshot."""
        self.state.suspended = False
        if checkpoint_id is not None:
            self.state.snapshot = find_checkpoint(self.state, checkpoint_id, self.id).snapshot
            await self.release_instance()
            self.record("resume", message=f"from checkpoint {checkpoint_id}")
        if self.input.resource_type:
            await self.ensure_instance_or_fail()
        else:
            self.move(Phase.ACTIVE)
        self.touch()
        self.clock.move_deadline()

    def begin_close(self, reason: str) -> None:
        if self.life.close(Phase.CLOSED, reason):
            self.record("destroy", message=reason)

    # --- the caller's data: metadata, name, checkpoints --------------------------------------

    def update_metadata(self, req: MetadataRequest) -> None:
        """Merge into the metadata (a None value removes a key), or replace it."""
        self.state.metadata = merged_metadata(
            self.state.metadata, req.metadata, replace=req.replace
        )
        self.record("metadata", message=", ".join(sorted(req.metadata))[:200] or "cleared")

    def rename(self, req: RenameRequest) -> None:
        previous, self.state.name = self.state.name, req.name
        self.record("rename", message=f"{previous!r} -> {req.name!r}")
        self.show_details()

    def save_checkpoint(self, req: SaveCheckpointRequest) -> Checkpoint:
        """Keep the caller's data with the instance's latest snapshot."""
        checkpoint = Checkpoint(
            checkpoint_id=f"ckpt_{workflow.uuid4().hex[:12]}",
            created_at=workflow.now(),
            label=req.label,
            data=req.data,
            snapshot=self.state.snapshot,
            size_bytes=json_size(req.data),
        )
        self.state.checkpoints.append(checkpoint)
        self.record("checkpoint", message=f"saved {checkpoint.checkpoint_id} {req.label}".strip())
        return checkpoint

    def delete_checkpoints(self, req: CheckpointRequest) -> int:
        """Delete one checkpoint, or all of them when none is named; answers how many went."""
        before = len(self.state.checkpoints)
        self.state.checkpoints = [
            c
            for c in self.state.checkpoints
            if req.checkpoint_id is not None and c.checkpoint_id != req.checkpoint_id
        ]
        deleted = before - len(self.state.checkpoints)
        self.record("checkpoint", message=f"deleted {req.checkpoint_id or 'all'} ({deleted})")
        return deleted

    # --- calls: what ExecutePath hands back ----------------------------------------------------

    def remember(self, request_id: str, envelope: Envelope) -> None:
        """Keep the answer: a repeat of ``request_id`` is answered with it, not run."""
        remember(self.state.recent_results, request_id, envelope)

    def call_answered(self, envelope: Envelope, params: dict[str, Any]) -> None:
        """A call ran, whatever its outcome: count it, move the deadline, log it (parameters
        redacted) and show its outcome."""
        self.state.call_count += 1
        self.touch()
        self.clock.move_deadline()
        self.record(
            "execute",
            request_id=envelope.meta.request_id,
            tool=envelope.meta.tool,
            code=envelope.code,
            message=envelope.message if envelope.code else "",
            session_id=envelope.meta.session_id,
            content={"params": redact(params)},
        )
        self.last_envelope = envelope
        self.show_details()

    def first_reply(self, key: str) -> bool:
        """True once per ``key`` (request and id): a repeated signal is not answered twice."""
        replied = self.state.replied
        if key in replied:
            return False
        replied.append(key)
        del replied[:-MAX_REMEMBERED_RESULTS]
        return True

    def new_temporary_instance(self) -> str:
        """The id of a temporary session's one instance (made by its one call)."""
        self.temporary_session_id = instance_activities.new_session_id(self.input.resource_type)
        return self.temporary_session_id

    def keep_snapshot(self, snapshot: dict[str, Any]) -> None:
        """The instance's latest state: a new instance (lost, moved, resumed) starts from it."""
        self.state.snapshot = snapshot

    # --- instances ---------------------------------------------------------------------------

    async def ensure_instance(self) -> None:
        """Create the instance if there is none (call with the lock held); a failure closes the
        session as ERROR and raises ``Rejected``."""
        if (
            not self.input.resource_type
            or self.state.instance is not None
            or not self.phase.is_open
        ):
            return
        try:
            # After a lost or moved instance the snapshot brings the new one back to its state.
            instance = await instance_activities.start_instance(
                self.input, self.state.config, self.state.snapshot
            )
        except Rejected as exc:
            self.state.error = exc.message
            self.state.error_code = exc.code
            self.life.close(Phase.ERROR, "initialize failed")
            self.sync_status()
            self.record("initialize", code=exc.code, message=exc.message)
            raise
        self.state.instance = instance
        self.move(Phase.ACTIVE)
        restored = " (restored from snapshot)" if instance.restored else ""
        self.record(
            "initialize", session_id=instance.session_id, message=f"on {instance.worker}{restored}"
        )
        self.show_details()

    async def ensure_instance_or_fail(self) -> None:
        """``ensure_instance``, where a failure is recorded and closing is all that is left."""
        try:
            await self.ensure_instance()
        except Rejected:
            pass

    def instance_lost(self, lost: InstanceInfo, outcome: ToolOutcome) -> None:
        """Its worker is gone: the next ``ensure_instance`` makes a new one (from the snapshot)."""
        self.record(
            "resource_lost", code=outcome.code, message=outcome.message, session_id=lost.session_id
        )
        self.state.instance = None

    async def instance_released(self, released: InstanceReleased) -> None:
        """A stopping worker released the instance: the next call makes a new one, restored."""
        async with self.lock:
            instance = self.state.instance
            if instance is None or instance.session_id != released.session_id:
                return  # already replaced
            self.state.instance = None
            if released.snapshot is not None:
                self.state.snapshot = released.snapshot
            self.record("released", session_id=released.session_id, message=released.reason)
            self.show_details()

    async def release_instance(self) -> None:
        instance, self.state.instance = self.state.instance, None
        if instance is not None:
            await self.release(instance)

    async def release(self, instance: InstanceInfo) -> None:
        problem = await instance_activities.release(instance, self.input.resource_type)
        if problem is None:
            self.record("cleanup", session_id=instance.session_id)
        else:  # the worker is gone, and the instance with it: nothing is left to release
            self.record(
                "cleanup", code=ErrorCode.RESOURCE_LOST, session_id=instance.session_id,
                message=problem,
            )  # fmt: skip

    # --- runs: what one run takes from the last and carries to the next -------------------------

    def take_output_stream(self) -> WorkflowStreamState | None:
        """The live output the previous run carried; the stream holds it now, so it is not kept
        twice in the state."""
        carried, self.state.output_stream = self.state.output_stream, None
        return carried

    def next_run(self, output: WorkflowStreamState) -> SessionInput:
        """The input continue-as-new starts the next run with: this one's state, carried."""
        self.state.status = self.life.status
        self.state.output_stream = output
        # A fork's start snapshot is in the state now (or a newer one): not carried twice.
        return self.input.model_copy(update={"carried": self.state, "restore": None})

    # --- state helpers -----------------------------------------------------------------------

    @property
    def id(self) -> str:
        return workflow.info().workflow_id

    @property
    def phase(self) -> Phase:
        return self.life.phase

    def move(self, to: Phase) -> None:
        """Move the phase where the table allows it; a move it does not list is ignored (the
        session closed meanwhile), never a failed workflow task."""
        if to is self.phase or not self.life.can_move(to):
            return
        self.life.move(to)
        self.sync_status()

    def sync_status(self) -> None:
        """The caller-visible status follows the phase: record it and upsert the attribute."""
        status = self.life.status
        if status is self.state.status:
            return
        previous, self.state.status = self.state.status, status
        timers = (self.input.idle_seconds, self.input.idle_suspend_seconds)
        if status is SessionStatus.ACTIVE and timers != (None, None):
            self.clock.wake()  # the run loop arms the idle (and suspend) timer again
        shown = workflow.info().typed_search_attributes.get(SessionStateAttr)
        if self.input.search_attributes and shown != status.value:  # a start may set it already
            workflow.upsert_search_attributes([SessionStateAttr.value_set(status.value)])
        self.record("state", message=f"{previous.value} -> {status.value}")

    def touch(self) -> None:
        """Something happened: the session is no longer idle."""
        self.clock.touch()
        if self.phase is Phase.IDLE:
            self.move(Phase.ACTIVE)

    def idle_timer_runs(self) -> bool:
        return self.phase is Phase.ACTIVE and not self.lock.locked()

    def record(self, kind: str, **fields: Any) -> SessionEvent:
        return self.log.record(workflow.now(), kind, **fields)

    def show_details(self) -> None:
        """The UI's current details, and the deadline and name in the search attributes."""
        workflow.set_current_details(
            current_details(self.input, self.state, self.life.status, self.last_envelope)
        )
        self._show_attributes()

    def _show_attributes(self) -> None:
        if not self.input.search_attributes or self.input.temporary:
            return
        if self._start_deadline is not None:
            self._shown_deadline = self._start_deadline
        self._start_deadline = None
        updates: list[SearchAttributeUpdate[Any]] = []
        deadline, shown = self.state.deadline, self._shown_deadline
        # Within a minute: every call moves the deadline, and an upsert is a history event.
        if deadline is not None and (shown is None or abs(deadline - shown) >= DEADLINE_SLACK):
            updates.append(DeadlineAttr.value_set(deadline))
            self._shown_deadline = deadline
        if self.state.name != self._shown_name:
            name = self.state.name
            updates.append(
                SessionNameAttr.value_set(name) if name else SessionNameAttr.value_unset()
            )
            self._shown_name = name
        if updates:
            workflow.upsert_search_attributes(updates)

    def view(self, *, created: bool = False) -> SessionView:
        message = self.state.error or self.life.reason
        return session_view(
            self.id, self.input, self.state, self.life.status, message, created=created
        )

    def count(self, name: str, description: str) -> None:
        workflow.metric_meter().create_counter(name, description).add(
            1, {"resource_type": self.input.resource_type}
        )


def _code(exc: ApplicationError) -> int:
    return exc.code if isinstance(exc, Rejected) else ErrorCode.INVALID_INPUT
