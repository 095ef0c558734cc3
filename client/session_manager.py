"""SessionManager: owner-scoped sessions, their states, checkpoints and history.

Each session is a SessionWorkflow whose id is the session id. Listing and counting are served by
Temporal visibility through the same search attributes the Temporal UI filters on; everything
else is an update (validated by the workflow, owner checked there) or a query.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.client import (
    WorkflowExecution as ListedExecution,
)
from temporalio.service import RPCError

from client.errors import (
    PermissionDenied,
    QuotaExceeded,
    SessionError,
    SessionNotFound,
    error_envelope,
    is_gone,
    printable,
)
from client.streams import watch_output
from client.transport import CALL_SLACK, SessionGone, call_problem, checked_id
from client.workflow_api import SessionQuery, SessionWorkflows
from contract import (
    DEFAULT_TASK_QUEUE,
    AgentIdAttr,
    AppendRequest,
    Checkpoint,
    CheckpointRequest,
    DestroyRequest,
    EnvelopeMeta,
    ErrorCode,
    EventsQuery,
    ExecuteRequest,
    MetadataRequest,
    OpenRequest,
    OutputChunk,
    RefreshRequest,
    RenameRequest,
    ResourceTypeAttr,
    SaveCheckpointRequest,
    SessionInput,
    SessionStateAttr,
    SessionStatus,
    SessionView,
    SetStateRequest,
    UserIdAttr,
)
from runtime.connection import connect

T = TypeVar("T")
R = TypeVar("R")
#: Live states: counted by get_active_session_count.
_ACTIVE = (SessionStatus.STARTING, SessionStatus.ACTIVE, SessionStatus.IDLE)
DEFAULT_MANAGED_TTL = 3600.0


class SessionRecord(BaseModel):
    """A session as the SessionManager answers it."""

    session_id: str
    user_id: str | None = None
    agent_id: str | None = None
    name: str = ""
    metadata: dict[str, Any] = {}
    state: SessionStatus
    resource_type: str | None = None
    instance_id: str | None = None
    created_at: datetime | None = None
    last_activity: datetime | None = None
    deadline: datetime | None = None
    closed_at: datetime | None = None
    ttl_seconds: float | None = None
    call_count: int = 0
    checkpoint_count: int = 0

    @classmethod
    def from_view(cls, view: SessionView) -> SessionRecord:
        return cls(
            session_id=view.workflow_id,
            user_id=view.user_id,
            agent_id=view.agent_id,
            name=view.name,
            metadata=view.metadata,
            state=view.status,
            resource_type=view.resource_type or None,
            instance_id=view.session_id,
            created_at=view.created_at,
            last_activity=view.last_activity,
            deadline=view.deadline,
            ttl_seconds=view.ttl_seconds,
            call_count=view.call_count,
            checkpoint_count=view.checkpoint_count,
        )

    @classmethod
    def from_listing(cls, execution: ListedExecution) -> SessionRecord:
        """What visibility alone knows (closed sessions are not asked for more)."""
        attrs = execution.typed_search_attributes
        state = attrs.get(SessionStateAttr)
        return cls(
            session_id=execution.id,
            user_id=attrs.get(UserIdAttr),
            agent_id=attrs.get(AgentIdAttr),
            state=SessionStatus(state) if state else SessionStatus.CLOSED,
            resource_type=attrs.get(ResourceTypeAttr),
            created_at=execution.start_time,
            closed_at=execution.close_time,
        )


class SessionManager:
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
        self.user_id = _checked_id(user_id, "user_id") if user_id else None
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

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("SessionManager is not started: use `async with SessionManager()`")
        return self._client

    @property
    def workflows(self) -> SessionWorkflows:
        """The typed gateway to the session workflows, on this manager's client and queue."""
        return SessionWorkflows(self.client, self.task_queue)

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
    ) -> SessionRecord:
        """Create a session owned by ``user_id``; with no ``resource_type`` it is a record only."""
        user_id = self._caller(user_id) or user_id
        _checked_id(agent_id, "agent_id")
        if resource_type is not None:
            _checked_id(resource_type, "resource_type")
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
                opened_by=request_id,
            )
        except ValidationError as exc:
            raise _refusal(exc) from None
        what = f"{resource_type} session" if resource_type else "session record"
        view = await self.workflows.open(
            inp,
            OpenRequest(request_id=request_id, user_id=user_id, admin=self.admin),
            workflow_id=session_id,
            summary=f"{what} of {user_id} ({agent_id})",
        )
        return SessionRecord.from_view(view)

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
    ) -> dict[str, Any]:
        """Run a tool on the session's resource; answers an envelope, as Sandbox.execute.
        ``stream``: publish its output while it runs, for :meth:`watch` (the answer still
        comes at its end)."""
        request_id = request_id or uuid.uuid4().hex
        meta = EnvelopeMeta(tool=printable(tool), request_id=request_id, workflow_id=session_id)
        problem = call_problem(tool, params)
        if problem is not None:
            return error_envelope(ErrorCode.INVALID_INPUT, problem, meta).model_dump(mode="json")
        params = dict(params or {})
        acting = self._acting(user_id)
        try:
            req = ExecuteRequest(
                tool=tool, params=params, request_id=request_id, stream=stream, **acting
            )
        except ValidationError as exc:
            refused = _refusal(exc)
            return error_envelope(refused.code, refused.message, meta).model_dump(mode="json")
        workflow_id = _checked_id(session_id, "session_id")
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
        owner = _checked_id(self._caller(user_id) or user_id, "user_id")
        return await self._delete_where(SessionQuery(running=None, user_id=owner), owner)

    async def delete_agent_sessions(self, agent_id: str, *, user_id: str | None = None) -> int:
        """Delete every session of an agent (of the caller's user, when there is one); answers
        how many live ones it ended."""
        agent = _checked_id(agent_id, "agent_id")
        owner = self._caller(user_id)
        query = SessionQuery(running=None, agent_id=agent, user_id=owner or None)
        return await self._delete_where(query, owner)

    # --- listing and counting (Temporal visibility) -------------------------------------------

    async def get_sessions_by_user(
        self, user_id: str, *, include_closed: bool = False
    ) -> list[SessionRecord]:
        """A user's sessions, newest first; live ones with their full record."""
        owner = _checked_id(self._caller(user_id) or user_id, "user_id")
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

    # --- checkpoints ---------------------------------------------------------------------------

    async def save_checkpoint(
        self, session_id: str, data: Any, *, label: str = "", user_id: str | None = None
    ) -> str:
        """Save ``data`` (JSON) with the resource's latest snapshot; answers the checkpoint id."""
        req = self._request(SaveCheckpointRequest, data=data, label=label, **self._acting(user_id))
        checkpoint = await self._update(session_id, self.workflows.save_checkpoint, req)
        return checkpoint.checkpoint_id

    async def list_checkpoints(
        self, session_id: str, *, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Oldest first, without their data."""
        return [
            c.model_dump(mode="json", exclude={"data", "snapshot"})
            for c in await self._checkpoints(session_id, user_id)
        ]

    async def get_checkpoint(
        self, session_id: str, checkpoint_id: str, *, user_id: str | None = None
    ) -> dict[str, Any] | None:
        for c in await self._checkpoints(session_id, user_id):
            if c.checkpoint_id == checkpoint_id:
                return c.model_dump(mode="json")
        return None

    async def get_latest_checkpoint(
        self, session_id: str, *, user_id: str | None = None
    ) -> dict[str, Any] | None:
        checkpoints = await self._checkpoints(session_id, user_id)
        return checkpoints[-1].model_dump(mode="json") if checkpoints else None

    async def delete_checkpoint(
        self, session_id: str, checkpoint_id: str, *, user_id: str | None = None
    ) -> bool:
        req = self._request(CheckpointRequest, checkpoint_id=checkpoint_id, **self._acting(user_id))
        return bool(await self._update(session_id, self.workflows.delete_checkpoints, req))

    async def clear_checkpoints(self, session_id: str, *, user_id: str | None = None) -> int:
        req = self._request(CheckpointRequest, **self._acting(user_id))
        return await self._update(session_id, self.workflows.delete_checkpoints, req)

    # --- history --------------------------------------------------------------------------------

    async def add_message(
        self, session_id: str, role: str, content: Any, *, user_id: str | None = None
    ) -> dict[str, Any]:
        """Append a chat message (role: user, assistant, system or tool) to the session's log."""
        req = self._request(AppendRequest, role=role, content=content, **self._acting(user_id))
        event = await self._update(session_id, self.workflows.append, req)
        return event.model_dump(mode="json")

    async def add_event(
        self,
        session_id: str,
        kind: str,
        content: Any = None,
        *,
        message: str = "",
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Append an event of the caller's own kind to the session's log."""
        if kind == "message":
            raise SessionError(ErrorCode.INVALID_INPUT, "use add_message for messages")
        req = self._request(
            AppendRequest,
            kind=kind,
            content=content,
            message=message,
            **self._acting(user_id),
        )
        event = await self._update(session_id, self.workflows.append, req)
        return event.model_dump(mode="json")

    async def search_events(
        self,
        session_id: str,
        *,
        start_id: int | None = None,
        end_id: int | None = None,
        reverse: bool = False,
        kind: str | None = None,
        limit: int = 20,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """A page of the log: ids in [start_id, end_id], one kind, at most ``limit`` (<= 100)."""
        query = self._request(
            EventsQuery, start_id=start_id, end_id=end_id, reverse=reverse, kind=kind, limit=limit
        )
        if start_id is not None and end_id is not None and end_id < start_id:
            raise SessionError(
                ErrorCode.INVALID_INPUT, f"end_id {end_id} is before start_id {start_id}"
            )
        await self._require(session_id, user_id)
        page = await self.workflows.events(session_id, query)
        return page.model_dump(mode="json")

    async def get_chat_history(
        self, session_id: str, last_n: int | None = None, *, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The session's messages, oldest first (the last ``last_n`` when given)."""
        if last_n is not None and last_n < 1:
            raise SessionError(ErrorCode.INVALID_INPUT, f"last_n must be >= 1, not {last_n}")
        events = await self._all_events(session_id, user_id, kind="message")
        if last_n is not None:
            events = events[-last_n:]
        return [
            {"id": e["id"], "at": e["at"], "role": e["role"], "content": e["content"]}
            for e in events
        ]

    async def export_history(self, session_id: str, *, user_id: str | None = None) -> str:
        """The session's whole retained log as JSON lines, oldest first."""
        events = await self._all_events(session_id, user_id)
        return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)

    # --- helpers -------------------------------------------------------------------------------

    def _acting(self, user_id: str | None) -> dict[str, Any]:
        """The identity fields of a request: the caller's user, and the administrator flag."""
        return {"user_id": self._caller(user_id), "admin": self.admin}

    def _caller(self, user_id: str | None) -> str | None:
        """The user a call acts for: its own, else the manager's; a scoped manager acts for
        its user only."""
        if user_id is not None:
            _checked_id(user_id, "user_id")
            if self.user_id is not None and user_id != self.user_id:
                raise PermissionDenied(
                    ErrorCode.PERMISSION_DENIED,
                    f"permission denied: this manager acts for user {self.user_id!r}, "
                    f"not {user_id!r}",
                )
            return user_id
        return self.user_id

    async def _view(self, session_id: str, user_id: str | None) -> SessionView | None:
        caller = self._caller(user_id)
        try:
            view = await self.workflows.describe(_checked_id(session_id, "session_id"))
        except RPCError as exc:
            if is_gone(exc):
                return None
            raise
        if caller is not None and view.user_id != caller:
            raise PermissionDenied(
                ErrorCode.PERMISSION_DENIED,
                f"permission denied: user {caller!r} does not own session {session_id}",
            )
        return view

    async def _require(self, session_id: str, user_id: str | None) -> SessionView:
        view = await self._view(session_id, user_id)
        if view is None:
            raise SessionNotFound(ErrorCode.NO_SESSION, f"no session {session_id!r}")
        return view

    async def _update(self, session_id: str, update: Callable[[str, R], Awaitable[T]], req: R) -> T:
        """``update`` (one of the gateway's) of the session; a gone session said as such."""
        try:
            return await update(_checked_id(session_id, "session_id"), req)
        except SessionGone:
            # Gone or already closed: tell which.
            view = await self._view(session_id, getattr(req, "user_id", None))
            if view is None:
                raise SessionNotFound(ErrorCode.NO_SESSION, f"no session {session_id!r}") from None
            raise SessionError(
                ErrorCode.SESSION_CLOSED, f"session {session_id} is {view.status.value}"
            ) from None

    async def _update_record(
        self, session_id: str, update: Callable[[str, R], Awaitable[SessionView]], req: R
    ) -> SessionRecord:
        return SessionRecord.from_view(await self._update(session_id, update, req))

    async def _destroy(self, session_id: str, reason: str, user_id: str | None) -> None:
        req = DestroyRequest(reason=reason, **self._acting(user_id))
        try:
            await self._update(session_id, self.workflows.destroy, req)
        except SessionError as exc:
            if exc.code != ErrorCode.SESSION_CLOSED:
                raise

    async def _checkpoints(self, session_id: str, user_id: str | None) -> list[Checkpoint]:
        await self._require(session_id, user_id)
        return await self.workflows.checkpoints(session_id)

    async def _all_events(
        self, session_id: str, user_id: str | None, *, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Page through the log, 100 at a time (queries stay small)."""
        events: list[dict[str, Any]] = []
        start: int | None = None
        while True:
            page = await self.search_events(
                session_id, start_id=start, kind=kind, limit=100, user_id=user_id
            )
            events.extend(page["events"])
            if not page["has_more"]:
                return events
            start = page["events"][-1]["id"] + 1

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

    def _request(self, model: type[T], **fields: Any) -> T:
        """Build a request; bad arguments become a SessionError a person understands."""
        try:
            return model(**fields)
        except ValidationError as exc:
            raise _refusal(exc) from None


def _checked_id(value: str, what: str) -> str:
    """The transport's id check, refused as a SessionError (INVALID_INPUT) like every other bad
    argument of a SessionManager call."""
    try:
        return checked_id(value, what)
    except ValueError as exc:
        raise SessionError(ErrorCode.INVALID_INPUT, str(exc)) from None


def _refusal(exc: ValidationError) -> SessionError:
    """A request that does not fit its model, as the error a person reads: its first problem
    and where; TOO_LARGE for a size over its limit (as the session answers), else
    INVALID_INPUT."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "input"
    code = ErrorCode.TOO_LARGE if first["type"] == "too_large" else ErrorCode.INVALID_INPUT
    return SessionError(code, f"{where}: {first['msg']}")
