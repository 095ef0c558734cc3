"""SessionManager: owner-scoped sessions, their states, checkpoints and history.

Each session is a SessionWorkflow whose id is the session id. Listing and counting are served by
Temporal visibility through the same search attributes the Temporal UI filters on; everything
else is an update (validated by the workflow, owner checked there) or a query, sent through the
typed gateway (``client.workflow_api``). Checkpoints and the log are in ``client.session_log``,
what every call shares (records, who acts, sending) in ``client.session_access``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, TypeVar

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.client import (
    WorkflowExecution as ListedExecution,
)

from client.errors import (
    QuotaExceeded,
    SessionError,
    error_envelope,
    printable,
)
from client.forking import Child, checked_count, fork_sessions
from client.session_access import SessionRecord, checked_arg, refusal
from client.session_log import SessionLog
from client.streams import watch_output
from client.transport import CALL_SLACK, SessionGone, call_problem
from client.workflow_api import SessionQuery
from contract import (
    DEFAULT_TASK_QUEUE,
    EnvelopeMeta,
    ErrorCode,
    ExecuteRequest,
    MetadataRequest,
    OpenRequest,
    OutputChunk,
    RefreshRequest,
    RenameRequest,
    SessionInput,
    SessionStatus,
    SetStateRequest,
)
from runtime.connection import connect

T = TypeVar("T")
R = TypeVar("R")
#: Live states: counted by get_active_session_count.
_ACTIVE = (SessionStatus.STARTING, SessionStatus.ACTIVE, SessionStatus.IDLE)
DEFAULT_MANAGED_TTL = 3600.0


class SessionManager(SessionLog):
    """Owner-scoped sessions: create, find, change, pause, checkpoint, log and delete them.

    Args:
        user_id: The caller's user. Owner-scoped calls refuse sessions of other users
            (``PermissionDenied``); a call's own ``user_id=`` overrides it.
        admin: An operator's manager: its requests reach every user's sessions. Off by default;
            without it, a call that names no user is refused by a session that has an owner.
        max_sessions_per_user: Live sessions a user may hold; ``None``: no limit.
        on_limit: At the limit, ``"reject"`` raises ``QuotaExceeded``; ``"close_oldest"``
            destroys the user's oldest live session (recorded in its log) to make room.
        ttl: Default TTL of a new session, seconds.
        idle_seconds: Quiet time after which a session shows IDLE (None: never).
        on_expire: ``"destroy"`` (default) or ``"pause"`` at a session's deadline.
    """

    def __init__(
        self,
        *,
        user_id: str | None = None,
        address: str | None = None,
        namespace: str | None = None,
        client: Client | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        ttl: float = DEFAULT_MANAGED_TTL,
        idle_seconds: float | None = None,
        on_expire: Literal["destroy", "pause"] = "destroy",
        max_sessions_per_user: int | None = None,
        on_limit: Literal["reject", "close_oldest"] = "reject",
        admin: bool = False,
    ) -> None:
        self.user_id = checked_arg(user_id, "user_id") if user_id else None
        self.address = address
        self.namespace = namespace
        self.task_queue = task_queue
        self.ttl = ttl
        self.idle_seconds = idle_seconds
        self.on_expire = on_expire
        self.max_sessions_per_user = max_sessions_per_user
        self.on_limit = on_limit
        self.admin = admin
        self._client = client

    async def start(self) -> SessionManager:
        if self._client is None:
            self._client = await connect(self.address, self.namespace)
        return self

    async def __aenter__(self) -> SessionManager:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self._client = None

    # --- sessions ----------------------------------------------------------------------------

    async def create_session(
        self,
        user_id: str,
        agent_id: str,
        metadata: Mapping[str, Any] | None = None,
        ttl: float | None = None,
        resource_type: str | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        name: str = "",
        idle_seconds: float | None = None,
        on_expire: Literal["destroy", "pause"] | None = None,
        idle_suspend_seconds: float | None = None,
        auto_resume: bool = True,
    ) -> SessionRecord:
        """Create a session owned by ``user_id``; with no ``resource_type`` it is a record only.
        ``idle_suspend_seconds``: suspend it that long idle; a call resumes it unless
        ``auto_resume`` is False (docs/fork-and-suspend.md)."""
        user_id = self._caller(user_id) or user_id
        checked_arg(agent_id, "agent_id")
        if resource_type is not None:
            checked_arg(resource_type, "resource_type")
        await self._make_room(user_id)
        session_id = f"sess_{uuid.uuid4().hex[:16]}"
        request_id = uuid.uuid4().hex
        try:
            inp = SessionInput(
                sandbox_id=session_id,
                resource_type=resource_type or "",
                config=dict(config or {}),
                ttl_seconds=ttl or self.ttl,
                user_id=user_id,
                agent_id=agent_id,
                name=name,
                metadata=dict(metadata or {}),
                idle_seconds=idle_seconds or self.idle_seconds,
                on_expire=on_expire or self.on_expire,
                idle_suspend_seconds=idle_suspend_seconds,
                auto_resume=auto_resume,
                opened_by=request_id,
            )
        except ValidationError as exc:
            raise refusal(exc) from None
        what = f"{resource_type} session" if resource_type else "session record"
        view = await self.workflows.open(
            inp,
            OpenRequest(request_id=request_id, user_id=user_id, admin=self.admin),
            workflow_id=session_id,
            summary=f"{what} of {user_id} ({agent_id})",
        )
        return SessionRecord.from_view(view)

    async def fork(
        self,
        session_id: str,
        n: int = 1,
        *,
        from_checkpoint: str | None = None,
        ttl: float | None = None,
        user_id: str | None = None,
    ) -> list[SessionRecord]:
        """``n`` (1..32) new sessions from the session's state now (or ``from_checkpoint``'s):
        workspace, working directory and exported variables, owner and options (``ttl``: a new
        TTL), each independent (``client.forking``). The per-user limit counts them."""
        checked_count(n)
        owner, limit = self._caller(user_id), self.max_sessions_per_user
        live = len(await self._list(SessionQuery(user_id=owner))) if owner and limit else 0
        if limit is not None and owner and live + n > limit:
            raise QuotaExceeded(
                ErrorCode.QUOTA_EXCEEDED,
                f"quota exceeded: user {owner!r} has {live} live sessions; {n} more would pass "
                f"the limit of {limit}",
            )
        acting = self._acting(user_id)
        views = await fork_sessions(
            self.workflows,
            checked_arg(session_id, "session_id"),
            [Child.managed() for _ in range(n)],
            from_checkpoint=from_checkpoint,
            ttl=ttl,
            user_id=acting["user_id"],
            admin=acting["admin"],
        )
        return [SessionRecord.from_view(v) for v in views]

    async def get_session(
        self, session_id: str, *, user_id: str | None = None
    ) -> SessionRecord | None:
        """The session, closed ones included; None when there is no such session."""
        view = await self._view(session_id, user_id)
        return SessionRecord.from_view(view) if view else None

    async def session_exists(self, session_id: str, *, user_id: str | None = None) -> bool:
        """True while the session is live (not closed, expired, failed or deleted)."""
        view = await self._view(session_id, user_id)
        return view is not None and not view.status.is_final

    async def get_session_state(
        self, session_id: str, *, user_id: str | None = None
    ) -> SessionStatus:
        return (await self._require(session_id, user_id)).status

    async def set_session_state(
        self,
        session_id: str,
        state: SessionStatus | str,
        *,
        checkpoint_id: str | None = None,
        user_id: str | None = None,
    ) -> SessionRecord:
        """``paused`` releases the resource (record and checkpoints kept); ``active`` resumes
        it now (from ``checkpoint_id``'s snapshot when given); ``idle`` only marks it."""
        value = state.value if isinstance(state, SessionStatus) else state
        if value not in ("active", "idle", "paused"):
            raise SessionError(
                ErrorCode.INVALID_INPUT,
                f"a session can be set to active, idle or paused, not {value!r}",
            )
        req = self._request(
            SetStateRequest, state=value, checkpoint_id=checkpoint_id, **self._acting(user_id)
        )
        return await self._update_record(session_id, self.workflows.set_state, req)

    async def update_session_metadata(
        self,
        session_id: str,
        metadata: Mapping[str, Any],
        *,
        replace: bool = False,
        user_id: str | None = None,
    ) -> SessionRecord:
        """Merge ``metadata`` into the session's (a None value removes a key), or replace it."""
        req = self._request(
            MetadataRequest, metadata=dict(metadata), replace=replace, **self._acting(user_id)
        )
        return await self._update_record(session_id, self.workflows.update_metadata, req)

    async def rename(
        self, session_id: str, name: str, *, user_id: str | None = None
    ) -> SessionRecord:
        req = self._request(RenameRequest, name=name, **self._acting(user_id))
        return await self._update_record(session_id, self.workflows.rename, req)

    async def refresh_session(
        self, session_id: str, ttl: float | None = None, *, user_id: str | None = None
    ) -> SessionRecord:
        """Move the deadline to now + TTL (optionally a new TTL)."""
        req = self._request(RefreshRequest, ttl_seconds=ttl, **self._acting(user_id))
        return await self._update_record(session_id, self.workflows.refresh, req)

    async def execute(
        self,
        session_id: str,
        tool: str,
        params: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        user_id: str | None = None,
        stream: bool = False,
        auto_resume: bool | None = None,
    ) -> dict[str, Any]:
        """Run a tool on the session's resource; answers an envelope, as Sandbox.execute.
        ``stream``: publish its output while it runs, for :meth:`watch` (the answer still
        comes at its end). ``auto_resume``: for a paused session, resume it (True) or answer
        4007 (False); None: the session's own setting."""
        request_id = request_id or uuid.uuid4().hex
        meta = EnvelopeMeta(tool=printable(tool), request_id=request_id, workflow_id=session_id)
        problem = call_problem(tool, params)
        if problem is not None:
            return error_envelope(ErrorCode.INVALID_INPUT, problem, meta).model_dump(mode="json")
        params = dict(params or {})
        acting = self._acting(user_id)
        try:
            req = ExecuteRequest(
                tool=tool,
                params=params,
                request_id=request_id,
                stream=stream,
                auto_resume=auto_resume,
                **acting,
            )
        except ValidationError as exc:
            refused = refusal(exc)
            return error_envelope(refused.code, refused.message, meta).model_dump(mode="json")
        workflow_id = checked_arg(session_id, "session_id")
        try:
            envelope = await self.workflows.execute(workflow_id, req)
        except SessionGone:
            envelope = error_envelope(ErrorCode.NO_SESSION, f"no live session {session_id!r}", meta)
        except SessionError as error:
            envelope = error_envelope(error.code, error.message, meta)
        return envelope.model_dump(mode="json")

    async def watch(
        self,
        session_id: str,
        from_offset: int = 0,
        *,
        request_id: str | None = None,
        user_id: str | None = None,
    ) -> AsyncIterator[OutputChunk]:
        """The session's live output (its streaming calls', or one's: ``request_id``) from
        ``from_offset`` on, as it arrives; resume from the last chunk's ``offset`` + 1. The
        caller must own the session (``PermissionDenied``, ``SessionNotFound`` at the first
        step). Ends when the session has closed."""
        await self._require(session_id, user_id)
        chunks = watch_output(self.client, session_id, from_offset, request_id=request_id)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # its long poll ends with the watcher, not when collected

    async def delete_session(self, session_id: str, *, user_id: str | None = None) -> bool:
        """Destroy the session (its resource is cleaned up) and delete it from Temporal; the
        server removes the record asynchronously. False when there is no such session."""
        view = await self._view(session_id, user_id)
        if view is None:
            return False
        if not view.status.is_final:
            await self._destroy(session_id, "deleted", user_id)
            # Delete a closed run: deleting one that is completing at that moment is lost.
            await asyncio.wait_for(self.workflows.summary(session_id), CALL_SLACK.total_seconds())
        await self.workflows.delete(session_id)
        return True

    async def delete_user_sessions(self, user_id: str) -> int:
        """Delete every session of a user; answers how many live ones it ended."""
        owner = checked_arg(self._caller(user_id) or user_id, "user_id")
        return await self._delete_where(SessionQuery(running=None, user_id=owner), owner)

    async def delete_agent_sessions(self, agent_id: str, *, user_id: str | None = None) -> int:
        """Delete every session of an agent (of the caller's user, when there is one); answers
        how many live ones it ended."""
        agent = checked_arg(agent_id, "agent_id")
        owner = self._caller(user_id)
        query = SessionQuery(running=None, agent_id=agent, user_id=owner or None)
        return await self._delete_where(query, owner)

    # --- listing and counting (Temporal visibility) -------------------------------------------

    async def get_sessions_by_user(
        self, user_id: str, *, include_closed: bool = False
    ) -> list[SessionRecord]:
        """A user's sessions, newest first; live ones with their full record."""
        owner = checked_arg(self._caller(user_id) or user_id, "user_id")
        query = SessionQuery(running=None if include_closed else True, user_id=owner)
        return await self._records(await self._list(query))

    async def get_recent_sessions(
        self, limit: int = 10, *, user_id: str | None = None
    ) -> list[SessionRecord]:
        """The most recently created sessions (of the caller's user, when there is one)."""
        if not 1 <= limit <= 100:
            raise SessionError(ErrorCode.INVALID_INPUT, f"limit must be 1..100, not {limit}")
        query = self._owned(user_id, running=None)
        return await self._records((await self._list(query))[:limit])

    async def get_active_session_count(self, user_id: str | None = None) -> int:
        """Live sessions in STARTING, ACTIVE or IDLE (of one user, or of all)."""
        states = tuple(s.value for s in _ACTIVE)
        return await self.workflows.count(self._owned(user_id, states=states))

    async def stats(self, user_id: str | None = None) -> dict[str, Any]:
        """Totals over owned sessions: total, active, paused, expired, closed, average duration."""
        count = self.workflows.count
        closed = await self._list(self._owned(user_id, running=False))
        durations = [
            (e.close_time - e.start_time).total_seconds()
            for e in closed
            if e.close_time is not None
        ]
        return {
            "total": await count(self._owned(user_id, running=None)),
            "live": await count(self._owned(user_id)),
            "active": await self.get_active_session_count(user_id),
            "paused": await count(self._owned(user_id, states=("paused",))),
            "expired": await count(self._owned(user_id, running=None, states=("expired",))),
            "closed": len(closed),
            "average_duration_seconds": (
                round(sum(durations) / len(durations), 3) if durations else 0.0
            ),
        }

    # --- helpers -------------------------------------------------------------------------------

    async def _make_room(self, user_id: str) -> None:
        """Enforce the per-user limit before a new session starts."""
        limit = self.max_sessions_per_user
        if limit is None:
            return
        live = await self._list(SessionQuery(user_id=user_id))
        if len(live) < limit:
            return
        if self.on_limit == "reject":
            raise QuotaExceeded(
                ErrorCode.QUOTA_EXCEEDED,
                f"quota exceeded: user {user_id!r} has {len(live)} live sessions and the limit "
                f"is {limit}; delete one or wait for one to expire",
            )
        for execution in sorted(live, key=lambda e: e.start_time)[: len(live) - limit + 1]:
            await self._destroy(
                execution.id,
                f"closed to make room: user {user_id!r} reached the limit of {limit} sessions",
                user_id,
            )

    def _owned(self, user_id: str | None, **filters: Any) -> SessionQuery:
        """Sessions of the caller's user, or (with none) of any owner."""
        return SessionQuery(user_id=self._caller(user_id), owned=True, **filters)

    async def _list(self, query: SessionQuery) -> list[ListedExecution]:
        """Matching session workflows, newest first."""
        found = [e async for e in self.workflows.list(query)]
        return sorted(found, key=lambda e: e.start_time, reverse=True)

    async def _records(self, executions: list[ListedExecution]) -> list[SessionRecord]:
        """Full records for live sessions (one query each, a few at a time), visibility's
        for closed ones."""
        gate = asyncio.Semaphore(16)

        async def record(execution: ListedExecution) -> SessionRecord:
            if execution.status is not WorkflowExecutionStatus.RUNNING:
                return SessionRecord.from_listing(execution)
            async with gate:
                view = await self._view(execution.id, None)
            return SessionRecord.from_view(view) if view else SessionRecord.from_listing(execution)

        return list(await asyncio.gather(*(record(e) for e in executions)))

    async def _delete_where(self, query: SessionQuery, owner: str | None) -> int:
        """Delete every matching session, acting for ``owner``; answers how many were live
        (closed ones are deleted too, but the server may list them for a while, so they are not
        counted again)."""
        executions = await self._list(query)
        for execution in executions:
            await self.delete_session(execution.id, user_id=owner)
        return sum(e.status is WorkflowExecutionStatus.RUNNING for e in executions)
