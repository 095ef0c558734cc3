"""What every SessionManager call shares: the session as SessionManager answers it, who a call
acts for, and how an update of a session is sent and its failures named."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import Client
from temporalio.client import WorkflowExecution as ListedExecution
from temporalio.service import RPCError

from client.errors import PermissionDenied, SessionError, SessionNotFound, is_gone
from client.transport import SessionGone, checked_id
from client.workflow_api import SessionWorkflows
from contract import (
    AgentIdAttr,
    DestroyRequest,
    ErrorCode,
    ResourceTypeAttr,
    SessionStateAttr,
    SessionStatus,
    SessionView,
    UserIdAttr,
)

T = TypeVar("T")
R = TypeVar("R")


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


class SessionAccess:
    """A manager's identity (``user_id``, ``admin``), client and queue, and the checks and
    sending every call of it shares."""

    user_id: str | None
    admin: bool
    task_queue: str
    _client: Client | None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("SessionManager is not started: use `async with SessionManager()`")
        return self._client

    @property
    def workflows(self) -> SessionWorkflows:
        """The typed gateway to the session workflows, on this manager's client and queue."""
        return SessionWorkflows(self.client, self.task_queue)

    def _acting(self, user_id: str | None) -> dict[str, Any]:
        """The identity fields of a request: the caller's user, and the administrator flag."""
        return {"user_id": self._caller(user_id), "admin": self.admin}

    def _caller(self, user_id: str | None) -> str | None:
        """The user a call acts for: its own, else the manager's; a scoped manager acts for
        its user only."""
        if user_id is not None:
            checked_arg(user_id, "user_id")
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
            view = await self.workflows.describe(checked_arg(session_id, "session_id"))
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
            return await update(checked_arg(session_id, "session_id"), req)
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

    def _request(self, model: type[T], **fields: Any) -> T:
        """Build a request; bad arguments become a SessionError a person understands."""
        try:
            return model(**fields)
        except ValidationError as exc:
            raise refusal(exc) from None


def checked_arg(value: str, what: str) -> str:
    """The transport's id check, refused as a SessionError (INVALID_INPUT) like every other bad
    argument of a SessionManager call."""
    try:
        return checked_id(value, what)
    except ValueError as exc:
        raise SessionError(ErrorCode.INVALID_INPUT, str(exc)) from None


def refusal(exc: ValidationError) -> SessionError:
    """A request that does not fit its model, as the error a person reads: its first problem
    and where; TOO_LARGE for a size over its limit (as the session answers), else
    INVALID_INPUT."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "input"
    code = ErrorCode.TOO_LARGE if first["type"] == "too_large" else ErrorCode.INVALID_INPUT
    return SessionError(code, f"{where}: {first['msg']}")
