"""The one client-side transport both clients use: how long a call may wait, how it is retried,
how its failures are named, and which ids are accepted.

``send`` is the only place an update's failures are mapped: an update the workflow failed or
rejected, or one no worker answered in time, becomes a ``SessionError`` carrying its envelope
code; a session workflow that does not exist or has already completed becomes ``SessionGone``.
Anything else (Temporal unreachable, a refused RPC) is raised as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from client.errors import SessionError, SessionNotFound, is_gone
from contract import (
    CONTINUING_AS_NEW,
    AgentIdAttr,
    ErrorCode,
    ResourceTypeAttr,
    SandboxIdAttr,
    SessionInput,
    SessionStateAttr,
    SessionStatus,
    UserIdAttr,
)
from contract.limits import ID_PATTERN, tool_timeout
from workflows import SessionWorkflow

T = TypeVar("T")

#: How long a call may wait for a worker beyond its tool's own timeout.
CALL_SLACK = timedelta(seconds=60)
QUERY_TIMEOUT = timedelta(seconds=10)
#: RPC refusals that mean "not now": the call did not run and may be sent again.
_RETRYABLE = (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE)


class SessionGone(SessionNotFound):
    """The session workflow does not exist or has already completed (the server's answer, not
    the workflow's): no update reached a session."""


def checked_id(value: Any, what: str) -> str:
    """``value`` when it is a valid sandbox, session, user or agent id; ValueError otherwise.

    Ids go into workflow ids and visibility queries, so only safe characters pass.
    """
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-200 letters, digits, '.', '_', '@', ':' or '-'"
        )
    return value


def call_timeout(params: Mapping[str, Any]) -> timedelta:
    """How long the client waits for a call: its tool's timeout (checked, finite) plus slack."""
    return timedelta(seconds=tool_timeout(dict(params))) + CALL_SLACK


async def send(call: Callable[[], Awaitable[T]]) -> T:
    """Send an update (``patiently``) and name its failure.

    Raises:
        SessionError: the workflow failed or rejected the update (by code:
            ``PermissionDenied``, ``QuotaExceeded``, ``SessionNotFound``...), or no worker
            answered in time (code ``UNAVAILABLE``).
        SessionGone: the session workflow does not exist or has completed.
        RPCError: any other refusal by the server (after ``patiently``'s retries).
    """
    try:
        return await patiently(call)
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise SessionError.of(exc) from None
    except RPCError as exc:
        if not is_gone(exc):
            raise
        raise SessionGone(
            ErrorCode.NO_SESSION, "no live session (never created, or already closed)"
        ) from None


async def patiently(call: Callable[[], Awaitable[T]], *, budget: float = 60.0) -> T:
    """Retry a call the server refused or dropped before running it: too many in-flight
    updates on one session, an update aborted by continue-as-new, a server restarting.

    Safe because the update id is the request id, and the session remembers recent answers
    across runs: a retried request never runs twice.
    """
    delay, waited = 0.05, 0.0
    while True:
        try:
            return await call()
        except RPCError as exc:
            if exc.status not in _RETRYABLE or waited >= budget:
                raise
        except WorkflowUpdateFailedError as exc:
            moving = isinstance(exc.cause, ApplicationError) and exc.cause.type == CONTINUING_AS_NEW
            if not moving or waited >= budget:
                raise
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 1.0)


def session_start_operation(
    inp: SessionInput,
    workflow_id: str,
    task_queue: str,
    *,
    summary: str,
    reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
) -> WithStartWorkflowOperation[Any, Any]:
    """Start a session workflow with the search attributes the UI and listings filter on.

    An operation serves one call only: build a fresh one for every attempt.
    """
    attrs = [
        SearchAttributePair(SandboxIdAttr, inp.sandbox_id),
        SearchAttributePair(SessionStateAttr, SessionStatus.STARTING.value),
    ]
    if inp.resource_type:
        attrs.append(SearchAttributePair(ResourceTypeAttr, inp.resource_type))
    if inp.user_id:
        attrs.append(SearchAttributePair(UserIdAttr, inp.user_id))
    if inp.agent_id:
        attrs.append(SearchAttributePair(AgentIdAttr, inp.agent_id))
    return WithStartWorkflowOperation(
        SessionWorkflow.run,
        inp,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=reuse,
        search_attributes=TypedSearchAttributes(attrs),
        static_summary=summary,
    )
