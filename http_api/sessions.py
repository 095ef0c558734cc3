"""One caller's sessions in one sandbox: the only place the HTTP API makes or ends a session,
so the key's jail policy (what a session config may ask of its sandbox) and the key's session
quota (a place held under a per-user lock while a session is made, given back when it is not
made or is destroyed) apply once, to every route that makes or ends one.

``client.Sandbox`` answers in AgentFlow's shapes; they are read here, once, into typed results,
so the routes read fields, not string keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from backends.jail_policy import HTTP_KEY, JailCeiling, JailPolicyError
from client import Sandbox
from client.forking import Child, fork_sessions
from contract import ErrorCode, EventsPage, EventsQuery, SessionView, session_workflow_id
from http_api.answers import ApiError, http_status
from http_api.caller import Caller
from http_api.limits import OverQuota
from http_api.owners import check_read, hide, may_read, readable
from http_api.state import State

#: The keys of create_session's answer that sum up several sessions, not the one made.
_SUMMARY_KEYS = frozenset({"create_time_ms", "total", "success", "sessions"})


@dataclass(frozen=True)
class Opened:
    """A session made or found (``ok``), or why not (``code``, ``error``)."""

    ok: bool
    created: bool
    session_id: str | None
    session_name: str | None
    session_status: str | None
    #: Why it failed (AgentFlow's ``error`` line of the session); None when ``ok``.
    error: str | None
    code: int
    #: The session's own message (the view's, or the refusal's).
    message: str | None
    #: The session as AgentFlow shows it.
    view: dict[str, Any]

    @classmethod
    def of(cls, answer: Mapping[str, Any], resource_type: str) -> Opened:
        """From ``Sandbox.create_session``'s answer for one resource type."""
        entry = answer["sessions"][resource_type]
        return cls(
            ok=entry["status"] == "success",
            created=bool(answer.get("created")),
            session_id=answer.get("session_id"),
            session_name=entry.get("session_name"),
            session_status=answer.get("session_status"),
            error=entry.get("error"),
            code=int(answer.get("code", ErrorCode.NO_SESSION)),
            message=answer.get("message"),
            view={k: v for k, v in answer.items() if k not in _SUMMARY_KEYS},
        )


@dataclass(frozen=True)
class Changed:
    """One session destroyed or refreshed (``view``), or why not (``code``, ``error``)."""

    view: dict[str, Any] | None
    #: The instance it had when destroyed, or has after a refresh.
    session_id: str | None = None
    code: int = ErrorCode.SUCCESS
    error: str = ""

    @property
    def session_name(self) -> str | None:
        return self.view.get("session_name") if self.view else None

    @property
    def expires_at(self) -> Any:
        return self.view.get("expires_at") if self.view else None

    @classmethod
    def destroyed(cls, answer: Mapping[str, Any], resource_type: str) -> Changed:
        """From ``Sandbox.destroy_session``'s answer."""
        view = answer["destroyed"].get(resource_type)
        if view is None:
            return cls._failed(answer, resource_type)
        return cls(view, view.get("destroyed_session_id"))

    @classmethod
    def refreshed(cls, answer: Mapping[str, Any], resource_type: str) -> Changed:
        """From ``Sandbox.refresh_sessions``' answer."""
        view = answer["refreshed"].get(resource_type)
        if view is None:
            return cls._failed(answer, resource_type)
        return cls(view, view.get("session_id"))

    @classmethod
    def _failed(cls, answer: Mapping[str, Any], resource_type: str) -> Changed:
        detail = answer["details"][resource_type]
        return cls(None, None, detail["code"], detail["error"])


@dataclass(frozen=True)
class Reinitialized:
    """A session's new instance, or why there is none; ``answer`` is AgentFlow's whole one."""

    ok: bool
    code: int
    message: str
    session_id: str | None
    answer: dict[str, Any]

    @classmethod
    def of(cls, answer: dict[str, Any]) -> Reinitialized:
        ok = answer.get("status") == "success"
        code = ErrorCode.SUCCESS if ok else int(answer.get("code", ErrorCode.SUCCESS))
        message = "success" if code == ErrorCode.SUCCESS else str(answer.get("message", ""))
        return cls(ok, code, message, answer.get("new_session_id"), answer)


@dataclass
class _Slot:
    """A new session's place in its key's quota; ``made`` keeps it."""

    made: bool = False


class SandboxSessions:
    """The sessions ``who`` may reach in sandbox ``worker_id``."""

    def __init__(self, state: State, who: Caller, worker_id: str) -> None:
        self.state = state
        self.who = who
        self.worker_id = worker_id

    @property
    def sandbox(self) -> Sandbox:
        return self.state.sandbox(self.who, self.worker_id)

    # --- making: policy, then a place in the quota ----------------------------------------------

    async def create(
        self,
        resource_type: str,
        config: dict[str, Any],
        ttl: float | None = None,
        **options: Any,
    ) -> Opened:
        """Open a session (or find it live); refused (403, 429) before anything starts.
        ``options``: ``idle_suspend_seconds``, ``auto_resume`` (``Sandbox.create_session``)."""
        self.check_config(config)
        async with self._place(resource_type) as slot:
            answer = await self.sandbox.create_session(resource_type, config, ttl=ttl, **options)
            opened = Opened.of(answer, resource_type)
            slot.made = opened.ok
        return opened

    async def fork(
        self, resource_type: str, n: int, from_checkpoint: str | None, ttl: float | None
    ) -> list[SessionView]:
        """``n`` sessions from the caller's ``resource_type`` session, each in a new sandbox and
        owned as the parent is; refused (404, 403, 429) before any starts."""
        parent = await self.find(resource_type)
        if parent is None:
            raise ApiError(404, ErrorCode.NO_SESSION, f"No session found for {resource_type}")
        check_read(self.who, parent)
        if parent.status.is_final:
            raise ApiError(
                http_status(ErrorCode.SESSION_CLOSED),
                ErrorCode.SESSION_CLOSED,
                f"session {parent.workflow_id} is {parent.status.value}: only a live session "
                "can be forked",
            )
        children = [Child.of_sandbox(self.worker_id, resource_type) for _ in range(n)]
        async with self._places([c.workflow_id for c in children]) as slot:
            views = await fork_sessions(
                self.state.sessions,
                parent.workflow_id,
                children,
                from_checkpoint=from_checkpoint,
                ttl=ttl,
                user_id=self.who.user_id,
                admin=self.who.admin,
            )
            slot.made = True
        return views

    async def reinitialize(
        self, resource_type: str, config: dict[str, Any] | None
    ) -> Reinitialized:
        """A new instance from ``config`` (made like a new session when there is none)."""
        self.check_config(config)
        async with self._place(resource_type) as slot:
            done = Reinitialized.of(await self.sandbox.reinitialize(resource_type, config))
            slot.made = done.ok
        return done

    def check_config(self, config: dict[str, Any] | None) -> None:
        """Refuse (403, 4012) a session config above what the caller's key may ask of its
        sandbox (the keys file's options; nothing above the defaults without them), before
        anything starts: a refused request changes nothing."""
        ceiling = self.who.key.ceiling if self.who.key is not None else JailCeiling()
        try:
            ceiling.check(config or {}, HTTP_KEY)
        except JailPolicyError as exc:
            data = {"setting": exc.setting, "asked": exc.asked, "allowed": exc.allowed}
            raise ApiError(403, ErrorCode.PERMISSION_DENIED, exc.message, data=data) from None

    def _place(self, resource_type: str) -> Any:
        """Refuse (429) a session over the key's limit, else hold its place in the count while
        the block makes it: kept when the block sets ``slot.made``, given back otherwise. An
        existing session may always be opened."""
        return self._places([session_workflow_id(self.worker_id, resource_type)])

    @asynccontextmanager
    async def _places(self, workflow_ids: list[str]) -> AsyncIterator[_Slot]:
        """``_place`` for several sessions made together (a fork's): all fit, or none is made."""
        who, quota = self.who, self.state.quota
        slot = _Slot()
        reserved: list[str] = []
        if who.user_id is not None:
            limit = self.state.limits.max_sessions
            if who.key is not None and who.key.max_sessions is not None:
                limit = who.key.max_sessions
            try:
                for workflow_id in workflow_ids:
                    if await quota.reserve(who.user_id, limit, workflow_id):
                        reserved.append(workflow_id)
            except OverQuota as over:
                for workflow_id in reserved:
                    quota.gone(who.user_id, workflow_id)
                live = over.count - len(reserved)
                more = f" ({len(workflow_ids)} more asked for)" if len(workflow_ids) > 1 else ""
                raise ApiError(
                    429,
                    ErrorCode.QUOTA_EXCEEDED,
                    f"quota exceeded: user {who.user_id!r} has {live} live sessions{more}, the "
                    f"most this key allows ({limit}); destroy one or wait for one to expire",
                    data={"limit": limit, "live_sessions": live},
                    headers={"Retry-After": str(int(over.retry))},
                ) from None
        try:
            yield slot
        finally:
            for workflow_id in workflow_ids:
                if slot.made:
                    quota.made(who.user_id, workflow_id)
                elif workflow_id in reserved:
                    quota.gone(who.user_id, workflow_id)

    # --- ending: the quota's place given back ------------------------------------------------

    async def destroy(self, resource_type: str) -> Changed:
        done = Changed.destroyed(await self.sandbox.destroy_session(resource_type), resource_type)
        if done.view is not None:
            self._gone(resource_type)
        return done

    async def destroy_all(self) -> int:
        """Destroy every session of the sandbox; answers how many were."""
        answer = await self.sandbox.destroy_session(None)
        for resource_type in answer["destroyed"]:
            self._gone(resource_type)
        return int(answer["success"])

    def _gone(self, resource_type: str) -> None:
        self.state.quota.gone(self.who.user_id, session_workflow_id(self.worker_id, resource_type))

    # --- the rest: no quota ------------------------------------------------------------------

    async def refresh(self, resource_type: str, ttl: float | None) -> Changed:
        answer = await self.sandbox.refresh_sessions(resource_type, ttl=ttl)
        return Changed.refreshed(answer, resource_type)

    async def refresh_all(self, ttl: float | None) -> tuple[int, dict[str, Any]]:
        """Refresh every session: how many were, and AgentFlow's ``details`` per type."""
        answer = await self.sandbox.refresh_sessions(None, ttl=ttl)
        return int(answer["refreshed_count"]), answer["details"]

    async def find(self, resource_type: str) -> SessionView | None:
        """The session's view, or None when it cannot answer (gone, never made, no worker)."""
        return await self.state.sessions.find(session_workflow_id(self.worker_id, resource_type))

    async def events(self, resource_type: str, query: EventsQuery) -> EventsPage:
        """A page of the session's event log (raises what the query raised)."""
        workflow_id = session_workflow_id(self.worker_id, resource_type)
        return await self.state.sessions.events(workflow_id, query)

    async def listed(self) -> list[dict[str, Any]]:
        """The live sessions the caller may read, as AgentFlow lists them."""
        return readable(self.who, await self.sandbox.list_sessions())

    async def active(self) -> list[str]:
        """The resource types of the live sessions the caller may read."""
        return [s["resource_type"] for s in await self.listed()]

    async def status(self) -> dict[str, Any]:
        """AgentFlow's status envelope, without the sessions the caller may not read."""
        who, sandbox = self.who, self.sandbox
        hidden: set[str] = set()
        if who.user_id is None and not who.admin:  # Sandbox shows such a caller every session
            listed = await sandbox.list_sessions()
            hidden = {s["resource_type"] for s in listed if not may_read(who, s.get("user_id"))}
        return hide(await sandbox.get_status(), hidden)
