"""The one client-side transport both clients use: how long a call may wait, how it is retried,
how its failures are named, and which ids are accepted.

``send`` is the only place an update's failures are mapped: an update the workflow failed or
rejected, or one no worker answered in time, becomes a ``SessionError`` carrying its envelope
code; a session workflow that does not exist or has already completed becomes ``SessionGone``.
Told the client and the task queue, it also watches a slow update: when no worker polls the
queue it answers ``UNAVAILABLE`` within :func:`no_worker_timeout` seconds, naming the queue and
how to start a worker, instead of waiting for the whole call's timeout. Anything else (a refused
RPC; Temporal unreachable, then with the address tried and how to start a server) is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from client.errors import SessionError, SessionNotFound, is_gone, never_ran
from contract import (
    CONTINUING_AS_NEW,
    AgentIdAttr,
    DeadlineAttr,
    ErrorCode,
    ParentSessionAttr,
    ResourceTypeAttr,
    SandboxIdAttr,
    SessionInput,
    SessionKindAttr,
    SessionNameAttr,
    SessionStateAttr,
    SessionStatus,
    UserIdAttr,
)
from contract.limits import ID_PATTERN, SESSION_CLOSING, json_problem, tool_timeout
from runtime.connection import START_SERVER_HINT, env_float

T = TypeVar("T")
Op = TypeVar("Op", bound=WithStartWorkflowOperation[Any, Any])

#: How long a call may wait for a worker beyond its tool's own timeout.
CALL_SLACK = timedelta(seconds=60)
QUERY_TIMEOUT = timedelta(seconds=10)
#: RPC refusals that mean "not now": the call did not run and may be sent again.
_RETRYABLE = (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE)
#: A session's refusals that a resent update gets past (``patiently``).
_RESEND = (CONTINUING_AS_NEW, SESSION_CLOSING)
#: Seconds an update may wait with no worker on its queue before it is answered UNAVAILABLE.
NO_WORKER_TIMEOUT_ENV = "SESSIONS_NO_WORKER_TIMEOUT"
DEFAULT_NO_WORKER_TIMEOUT = 10.0
#: A slow update looks at its queue at most this often.
_RECHECK_SECONDS = 5.0
#: A workflow task waiting this long while no poller asked for work: the listed workers are gone.
_STALE_SECONDS = 5.0
#: The update-with-start operations made by the call a ``send`` is watching.
_OPERATIONS: ContextVar[list[WithStartWorkflowOperation[Any, Any]] | None] = ContextVar(
    "send_operations", default=None
)


class SessionGone(SessionNotFound):
    """The session workflow does not exist or has already completed (the server's answer, not
    the workflow's): no update reached a session. ``never_ran``: the server said no run of it
    exists, so there is no ended session to ask why it ended."""

    def __init__(self, code: int, message: str, *, never_ran: bool = False) -> None:
        super().__init__(code, message)
        self.never_ran = never_ran


def checked_id(value: Any, what: str) -> str:
    """``value`` when it is a valid sandbox, session, user or agent id; ValueError otherwise.

    Ids go into workflow ids and visibility queries, so only safe characters pass.
    """
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-200 letters, digits, '.', '_', '@', ':' or '-'"
        )
    return value


def call_problem(tool: Any, params: Any, extra: Mapping[str, Any] | None = None) -> str | None:
    """Why a call cannot be sent as it is, or None: a tool that is not a name, parameters that
    are not a mapping, or (with the ``extra`` keyword parameters) values that cannot travel as
    JSON (``contract.limits.json_problem``). Checked before anything is sent or started, so a
    malformed call is answered INVALID_INPUT like any other refusal instead of raising."""
    if not isinstance(tool, str):
        return f"tool must be a name such as 'bash:run', got {type(tool).__name__}"
    if not tool.isascii() and json_problem("tool", tool) is not None:
        return f"tool {tool!r} is not valid Unicode text (a lone surrogate)"
    if params is not None and not isinstance(params, Mapping):
        kind = type(params).__name__
        return f"params must be a mapping of parameter names to values, got {kind}"
    return json_problem("params", {**(params or {}), **(extra or {})})


def call_timeout(params: Mapping[str, Any]) -> timedelta:
    """How long the client waits for a call: its tool's timeout (checked, finite) plus slack."""
    return timedelta(seconds=tool_timeout(dict(params))) + CALL_SLACK


def no_worker_timeout() -> float:
    """Seconds an update waits with no worker polling its queue (``$SESSIONS_NO_WORKER_TIMEOUT``,
    default 10): long enough for a worker that is starting, short enough for a person."""
    return env_float(NO_WORKER_TIMEOUT_ENV, DEFAULT_NO_WORKER_TIMEOUT)


async def send(
    call: Callable[[], Awaitable[T]],
    *,
    client: Client | None = None,
    task_queue: str | None = None,
) -> T:
    """Send an update (``patiently``) and name its failure.

    With ``client`` and ``task_queue`` (the session's queue), an update still unanswered after
    :func:`no_worker_timeout` seconds looks at the queue: when no worker polls it, the call is
    abandoned with ``UNAVAILABLE`` and a message naming the queue and how to start a worker.

    Raises:
        SessionError: the workflow failed or rejected the update (by code:
            ``PermissionDenied``, ``QuotaExceeded``, ``SessionNotFound``...), or no worker
            answered in time (code ``UNAVAILABLE``).
        SessionGone: the session workflow does not exist or has completed.
        RPCError: any other refusal by the server (after ``patiently``'s retries); when the
            server cannot be reached, its message names the address and how to start one.
    """
    try:
        if client is None or task_queue is None:
            return await patiently(call)
        return await _watched(patiently(call), client, task_queue)
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise SessionError.of(exc) from None
    except RPCError as exc:
        if is_gone(exc):
            raise SessionGone(
                ErrorCode.NO_SESSION,
                "no live session (never created, or already closed)",
                never_ran=never_ran(exc),
            ) from None
        if client is not None and exc.status == RPCStatusCode.UNAVAILABLE:
            where = client.service_client.config.target_host
            raise RPCError(
                f"cannot reach Temporal at {where}: {exc.message}; {START_SERVER_HINT}",
                exc.status,
                exc.raw_grpc_status,
            ) from exc
        raise


async def _watched(call: Awaitable[T], client: Client, task_queue: str) -> T:
    """``call``, abandoned with UNAVAILABLE when it has waited the bound and two looks at
    ``task_queue`` in a row found no worker taking work there (one look could catch workers
    reconnecting after a server restart). A worker seen there lets it wait on (a long call)."""
    bound = no_worker_timeout()
    every = min(bound / 2, _RECHECK_SECONDS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    operations: list[WithStartWorkflowOperation[Any, Any]] = []
    token = _OPERATIONS.set(operations)
    try:
        task = asyncio.ensure_future(call)  # runs in a copy of this context: it sees the list
    finally:
        _OPERATIONS.reset(token)
    try:
        missing_before = False
        await asyncio.wait({task}, timeout=every)
        while not task.done():
            stale = min(_STALE_SECONDS, bound)
            problem = await missing_worker(client, task_queue, stale_after=stale)
            waited = loop.time() - started
            if problem is not None and missing_before and waited >= bound - 0.5:
                raise SessionError(
                    ErrorCode.UNAVAILABLE, f"{problem}; waited {waited:.0f} s. {worker_hint()}"
                )
            missing_before = problem is not None
            await asyncio.wait({task}, timeout=every)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            # An abandoned update-with-start fails its operation's handle; read that failure, or
            # asyncio logs "Future exception was never retrieved" when it is collected.
            for operation in operations:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(operation.workflow_handle(), 0.1)


def tracked(operation: Op) -> Op:
    """``operation``, known to the ``send`` watching the call that runs it (every
    update-with-start operation is made through here)."""
    operations = _OPERATIONS.get()
    if operations is not None:
        operations.append(operation)
    return operation


def worker_hint() -> str:
    """How to start a worker, for every "no worker" message."""
    return (
        "Start a worker: `python worker.py` (TEMPORAL_ADDRESS and SESSIONS_TASK_QUEUE name the "
        "server and queue when not the defaults), or `./run.sh` for a dev server with a worker. "
        "The request has not run; it may still run once a worker starts."
    )


async def missing_worker(client: Client, task_queue: str, *, stale_after: float) -> str | None:
    """Why no worker takes ``task_queue``'s workflow tasks, or None when one does (or when the
    server cannot say: a caller then waits as before).

    No poller at all says it at once. The server lists a poller for minutes after its worker
    died, so a listed one counts as gone when a workflow task has waited ``stale_after``
    seconds and no poller has asked for work in that time (a live worker asks again as soon as
    it has a free slot, and takes a waiting task at once).
    """
    try:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                report_stats=True,
            ),
            timeout=timedelta(seconds=5),
        )
    except Exception:
        return None
    where = (
        f"task queue {task_queue!r} on {client.service_client.config.target_host} "
        f"(namespace {client.namespace!r})"
    )
    if not described.pollers:
        return f"no worker is polling {where}"
    waiting = described.stats.approximate_backlog_age.ToTimedelta().total_seconds()
    newest = max(p.last_access_time.ToDatetime(tzinfo=UTC) for p in described.pollers)
    quiet = (datetime.now(UTC) - newest).total_seconds()
    if waiting >= stale_after and quiet >= stale_after:
        return (
            f"no worker has taken work from {where} for {waiting:.0f} s (its last poll was "
            f"{quiet:.0f} s ago: the worker stopped?)"
        )
    return None


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
            # Moving to its next run, or closing (an open: its retry starts a fresh session).
            moving = isinstance(exc.cause, ApplicationError) and exc.cause.type in _RESEND
            if not moving or waited >= budget:
                raise
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 1.0)


def start_search_attributes(inp: SessionInput) -> TypedSearchAttributes:
    """What a session's start shows the UI and listings (owner, state, type, deadline...)."""
    attrs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(SandboxIdAttr, inp.sandbox_id),
        # A temporary session is active from its first workflow task: one upsert fewer there.
        SearchAttributePair(
            SessionStateAttr,
            (SessionStatus.ACTIVE if inp.temporary else SessionStatus.STARTING).value,
        ),
    ]
    if inp.resource_type:
        attrs.append(SearchAttributePair(ResourceTypeAttr, inp.resource_type))
    if inp.user_id:
        attrs.append(SearchAttributePair(UserIdAttr, inp.user_id))
    if inp.agent_id:
        attrs.append(SearchAttributePair(AgentIdAttr, inp.agent_id))
    if inp.name:
        attrs.append(SearchAttributePair(SessionNameAttr, inp.name))
    if not inp.temporary:
        # The deadline as this clock sees it: the session corrects it (it upserts when the two
        # differ by its slack, a minute), and needs no upsert of its own at start.
        deadline = datetime.now(UTC) + timedelta(seconds=inp.ttl_seconds)
        attrs.append(SearchAttributePair(DeadlineAttr, deadline))
    if inp.parent_session:
        attrs.append(SearchAttributePair(ParentSessionAttr, inp.parent_session))
    kind = "temporary" if inp.temporary else "session" if inp.resource_type else "record"
    attrs.append(SearchAttributePair(SessionKindAttr, kind))
    return TypedSearchAttributes(attrs)
