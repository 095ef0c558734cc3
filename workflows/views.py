"""What a session shows: its view (describe), its summary (the result) and the UI's details."""

from __future__ import annotations

from contract import (
    CarriedState,
    Envelope,
    SessionInput,
    SessionStatus,
    SessionSummary,
    SessionView,
)
from workflows.redaction import redact


def session_view(
    workflow_id: str,
    inp: SessionInput,
    state: CarriedState,
    status: SessionStatus,
    message: str,
    *,
    created: bool = False,
) -> SessionView:
    instance = state.instance
    return SessionView(
        workflow_id=workflow_id,
        sandbox_id=inp.sandbox_id,
        resource_type=inp.resource_type,
        status=status,
        session_id=instance.session_id if instance else None,
        worker=instance.worker if instance else None,
        created=created,
        created_at=state.created_at,
        deadline=state.deadline,
        ttl_seconds=inp.ttl_seconds,
        call_count=state.call_count,
        # Config values under secret-looking names stay out of sight, as in the event log.
        config=redact(state.config, cut=False),
        user_id=inp.user_id,
        agent_id=inp.agent_id,
        temporary=inp.temporary,
        tools=[t.name for t in instance.tools] if instance else [],
        message=message,
        name=state.name,
        metadata=state.metadata,
        last_activity=state.last_activity,
        checkpoint_count=len(state.checkpoints),
        on_expire=inp.on_expire,
    )


def session_summary(
    inp: SessionInput,
    state: CarriedState,
    status: SessionStatus,
    reason: str,
    last_session_id: str | None,
    last_envelope: Envelope | None,
) -> SessionSummary:
    return SessionSummary(
        sandbox_id=inp.sandbox_id,
        resource_type=inp.resource_type,
        status=status,
        reason=reason,
        call_count=state.call_count,
        last_session_id=last_session_id,
        last_envelope=last_envelope,
    )


def title(inp: SessionInput, name: str) -> str:
    kind = f"**{inp.resource_type}** session" if inp.resource_type else "record"
    named = f" “{name}”" if name else ""
    owner = f" of {inp.user_id}" if inp.user_id else ""
    return f"{kind}{named}{owner}"


def current_details(
    inp: SessionInput, state: CarriedState, status: SessionStatus, last: Envelope | None
) -> str:
    """The UI's "current details" of the session: owner, state, instance, calls, deadline."""
    instance = state.instance
    where = "no instance"
    if instance:
        where = f"instance `{instance.session_id}` on `{instance.worker}`"
    last_call = f" · last: `{last.meta.tool}` → {last.code}" if last else ""
    deadline = state.deadline.isoformat() if state.deadline else "none"
    return (
        f"{title(inp, state.name)}, {status.value} · {where} · "
        f"{state.call_count} calls · deadline {deadline}{last_call}"
    )
