"""What a session shows: its view (describe), its summary (the result) and the UI's details."""

from __future__ import annotations

from typing import Any

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
        error_code=state.error_code if status is SessionStatus.ERROR else None,
        name=state.name,
        metadata=state.metadata,
        last_activity=state.last_activity,
        checkpoint_count=len(state.checkpoints),
        on_expire=inp.on_expire,
        processes=list((state.snapshot or {}).get("processes") or []),
        parent_session=inp.parent_session,
        idle_suspend_seconds=inp.idle_suspend_seconds,
        auto_resume=inp.auto_resume,
        suspended=state.suspended,
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
    """The UI's "current details": owner, state, instance, calls, deadline and the last call."""
    instance = state.instance
    where = "no instance"
    if instance:
        where = f"instance `{instance.session_id}` on `{instance.worker}`"
    calls = f"{state.call_count} call" + ("" if state.call_count == 1 else "s")
    deadline = (
        f"expires {state.deadline:%Y-%m-%d %H:%M:%S} UTC" if state.deadline else "no deadline"
    )
    parent = f" · fork of `{inp.parent_session}`" if inp.parent_session else ""
    if state.suspended:
        where = "suspended (idle): the next call resumes it"
    return (
        f"{title(inp, state.name)} · {status.value} · {where} · {calls} · {deadline}{parent}"
        f"{_last(last)}"
    )


def _last(last: Envelope | None) -> str:
    if last is None:
        return ""
    if last.code:
        outcome = f"{last.code} {_first_line(last.message, 80)}"
    else:
        outcome = _tool_outcome(last.data)
    return f" · last: `{last.meta.tool}` → {outcome}"


def _tool_outcome(data: Any) -> str:
    """A successful call can still report a failure of its own: a cell that raised (code), a
    command that exited non-zero (bash)."""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("type"):
            return f"raised {error['type']}"
        exit_code = data.get("exit_code")
        if isinstance(exit_code, int) and exit_code != 0:
            return f"exit {exit_code}"
    return "ok"


def call_summary(tool: str, params: dict[str, Any]) -> str:
    """What the UI shows for a call's activity: the tool and the start of what it runs."""
    for key in ("command", "code", "query", "text", "keys"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return f"{tool}: {_first_line(value, 60)}"
    return tool


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
