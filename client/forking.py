"""Fork: N new sessions, each started from one live session's state (issue 26).

The parent answers what its children start from (``SessionWorkflow.fork``: its input as it is
now and a fresh snapshot, or a checkpoint's); the client then starts each child as a session of
its own, like any open, with that snapshot to restore, the parent's id as ``parent_session``
(the ``ParentSession`` search attribute) and the parent's owner. All or nothing: when a child
cannot start, the ones made are destroyed and the fork raises.

``Sandbox.fork``, ``SessionManager.fork`` and the HTTP API's ``session/fork`` share
:func:`fork_sessions`; each names its children its own way (:class:`Child`).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from client.errors import SessionError
from client.http_engine import HttpEngine
from client.session_access import refusal
from client.transport import SessionGone
from client.workflow_api import SessionWorkflows
from contract import (
    DestroyRequest,
    ErrorCode,
    ForkRequest,
    OpenRequest,
    SessionInput,
    SessionStatus,
    SessionView,
    session_workflow_id,
)
from contract.requests import MAX_FORK

#: The suffix a forked Sandbox's id gets; a fork of a fork replaces it (ids do not grow).
_FORK_SUFFIX = re.compile(r"\.f[0-9a-f]{10}$")


@dataclass(frozen=True)
class Child:
    """One session a fork makes: its workflow id and its sandbox id."""

    workflow_id: str
    sandbox_id: str

    @classmethod
    def of_sandbox(cls, parent_sandbox_id: str, resource_type: str) -> Child:
        """A new sandbox (``<parent's sandbox>.f<10 hex>``) with the session of one type."""
        base = _FORK_SUFFIX.sub("", parent_sandbox_id)[:180]
        sandbox_id = f"{base}.f{uuid.uuid4().hex[:10]}"
        return cls(session_workflow_id(sandbox_id, resource_type), sandbox_id)

    @classmethod
    def managed(cls) -> Child:
        """A SessionManager's session: its id is its workflow id and its sandbox id."""
        session_id = f"sess_{uuid.uuid4().hex[:16]}"
        return cls(session_id, session_id)


def checked_count(n: Any) -> int:
    """``n`` when it is a whole number of children in 1..MAX_FORK, else SessionError 4000."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_FORK:
        raise SessionError(
            ErrorCode.INVALID_INPUT,
            f"a fork makes 1 to {MAX_FORK} sessions (n={n!r})",
        )
    return n


async def fork_sessions(
    workflows: SessionWorkflows,
    parent_id: str,
    children: list[Child],
    *,
    from_checkpoint: str | None = None,
    ttl: float | None = None,
    user_id: str | None = None,
    admin: bool = False,
) -> list[SessionView]:
    """Start ``children`` from the session ``parent_id``'s state; their views (each ACTIVE,
    its instance restored), in order. Raises SessionError: the parent refused (4000 bad
    request, 4008 unknown checkpoint, 4010 closed, 4012 not the owner), or a child could not
    start (the others made are destroyed)."""
    checked_count(len(children))
    try:
        req = ForkRequest(
            children=[c.workflow_id for c in children],
            from_checkpoint=from_checkpoint,
            request_id=uuid.uuid4().hex,
            user_id=user_id,
            admin=admin,
        )
    except ValidationError as exc:
        raise refusal(exc) from None
    try:
        source = await workflows.fork(parent_id, req)
    except SessionGone:
        raise SessionError(
            ErrorCode.NO_SESSION, f"no live session {parent_id} to fork (never created, or closed)"
        ) from None
    parent = source.input
    try:
        inputs = [
            SessionInput.model_validate(
                {
                    **parent.model_dump(),
                    "sandbox_id": child.sandbox_id,
                    "parent_session": source.parent,
                    "restore": source.snapshot,
                    "ttl_seconds": parent.ttl_seconds if ttl is None else ttl,
                    "opened_by": uuid.uuid4().hex,
                }
            )
            for child in children
        ]
    except ValidationError as exc:
        raise refusal(exc) from None
    summary = f"{parent.resource_type} session forked from {source.parent}"

    async def start(child: Child, inp: SessionInput) -> SessionView:
        opened = OpenRequest(request_id=inp.opened_by, user_id=user_id, admin=admin)
        return await workflows.open(inp, opened, workflow_id=child.workflow_id, summary=summary)

    started = await asyncio.gather(
        *(start(c, i) for c, i in zip(children, inputs, strict=True)), return_exceptions=True
    )
    views = [v for v in started if isinstance(v, SessionView)]
    if len(views) == len(children) and all(v.status is not SessionStatus.ERROR for v in views):
        return views
    await _destroy_made(workflows, views, user_id, admin)
    raise _first_failure(started)


async def _destroy_made(
    workflows: SessionWorkflows, views: list[SessionView], user_id: str | None, admin: bool
) -> None:
    req = DestroyRequest(user_id=user_id, admin=admin, reason="a sibling of this fork failed")
    await asyncio.gather(
        *(workflows.destroy(v.workflow_id, req) for v in views), return_exceptions=True
    )


def _first_failure(started: list[SessionView | BaseException]) -> BaseException:
    for item in started:
        if isinstance(item, SessionError):
            return SessionError(item.code, f"a forked session could not start: {item.message}")
        if isinstance(item, BaseException):
            return item
        if item.status is SessionStatus.ERROR:
            code = item.error_code or ErrorCode.INITIALIZE_FAILED
            return SessionError(code, f"a forked session could not start: {item.message}")
    return SessionError(ErrorCode.INTERNAL, "a forked session could not start")


async def forked_sandbox(parent: Any, engine: Any, sandbox_id: str, resource_type: str) -> Any:
    """A started Sandbox like ``parent`` (same owner, options and transport) for the forked
    sandbox ``sandbox_id``, which holds its ``resource_type`` session."""
    common: dict[str, Any] = {
        "user_id": parent.user_id,
        "agent_id": parent.agent_id,
        "metadata": parent.metadata,
        "admin": parent.admin,
        "session_ttl": parent.session_ttl,
        "destroy_on_exit": parent.destroy_on_exit,
        "after_expiry": parent.after_expiry,
        "task_queue": parent.task_queue,
        "strict_params": parent.strict_params,
        "timeout": parent.timeout,
    }
    if isinstance(engine, HttpEngine):
        child = type(parent)(
            sandbox_id,
            server_url=engine.server_url,
            api_key=engine.api_key,
            retry_count=engine.retry_count,
            **common,
        )
    else:
        child = type(parent)(sandbox_id, client=parent.client, tools=engine.catalog, **common)
    await child.start()
    child._engine.created.add(resource_type)  # its own session: destroyed on `async with` exit
    return child
