"""The FastAPI application: AgentFlow's routes, bodies, answers and status codes, each run on
``client.Sandbox`` for the caller's user.

Status codes follow AgentFlow's: 200 for code 0; 400 for the other 4xxx codes of an execute;
500 for 5xxx (207 for a partly failed batch); 404 when destroy or refresh finds no session.
What AgentFlow lacks: 401 (no valid key, 4011), 403 (another user's session, 4012), 429 (a
limit, 4013, with ``Retry-After``), 413 (a body over the limit, 4009), 422 (a body that does not
fit: 4003 missing field, 4004 wrong type), 503 (no worker answered, 5015). Every error body is an
envelope ``{code, message, data, meta}``; nothing answers a traceback.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client
from temporalio.service import RPCError

from backends.jail_policy import HTTP_KEY, JailCeiling, JailPolicyError
from client import Sandbox, SessionError
from client.agentflow import envelope, tool_info, visible, warmup_status
from client.catalog import ToolCatalog
from contract import DEFAULT_TASK_QUEUE, ErrorCode, ToolSpec, WarmupInput, session_workflow_id
from contract.limits import ID_PATTERN
from http_api.keys import ApiKey, KeyStore
from http_api.limits import OverQuota, RateLimiter, SessionQuota
from http_api.models import (
    OUT_OF_RANGE,
    BatchBody,
    CreateBody,
    EventsBody,
    ExecuteBody,
    InitBatchBody,
    InitFromConfigBody,
    InitResourceBody,
    RefreshBody,
    ReinitializeBody,
    SessionBody,
    ShutdownBody,
    WarmupBody,
    WorkerBody,
)
from http_api.owners import check_read, hide, may_read, readable
from runtime.body_limit import BodyLimit
from workflows import WarmupWorkflow

log = logging.getLogger("durable-sessions.http")

#: Sandboxes kept for (user, admin, worker id): each remembers which resources are shared.
_SANDBOX_CACHE = 4096


@dataclass
class Limits:
    """Defaults for keys that set none."""

    max_sessions: int = 50
    rate: float = 50.0
    burst: int = 100
    max_body_bytes: int = 2 * 1024 * 1024


@dataclass(frozen=True)
class Caller:
    """Who sent a request: from the API key, never from the request."""

    user_id: str | None
    admin: bool = False
    key: ApiKey | None = None


LOCAL = Caller(user_id=None)


@dataclass
class Slot:
    """A new session's place in its key's quota; ``made`` keeps it."""

    made: bool = False


class ApiError(Exception):
    """An answer that is an error: HTTP status, envelope code, message, headers."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = int(code)
        self.message = message
        self.data = data
        self.headers = headers or {}


def http_status(code: int) -> int:
    """The HTTP status of an envelope code (AgentFlow's rule, plus our additions)."""
    special: dict[int, int] = {
        ErrorCode.SUCCESS: 200,
        ErrorCode.TOO_LARGE: 413,
        ErrorCode.UNAUTHENTICATED: 401,
        ErrorCode.PERMISSION_DENIED: 403,
        ErrorCode.QUOTA_EXCEEDED: 429,
        ErrorCode.PARTIAL_FAILURE: 207,
        ErrorCode.UNAVAILABLE: 503,
    }
    if code in special:
        return special[code]
    return 400 if 4000 <= code < 5000 else 500


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


def _error(exc: ApiError, tool: str = "") -> JSONResponse:
    body = envelope(exc.code, exc.message, exc.data, tool=tool)
    return _answer(exc.status, body, exc.headers)


class State:
    """What the routes share: the Temporal client, keys, limits, tools and sandboxes."""

    def __init__(
        self,
        client: Client,
        keys: KeyStore,
        limits: Limits,
        *,
        task_queue: str,
        session_ttl: float | None,
        config_dir: Path | None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.limits = limits
        self.task_queue = task_queue
        self.session_ttl = session_ttl
        self.config_dir = config_dir.resolve() if config_dir else None
        self.rates = RateLimiter()
        self.quota = SessionQuota(client)
        self.tools = ToolCatalog(self._load_tools)
        self.warmed: set[str] = set()
        self._sandboxes: OrderedDict[tuple[str | None, bool, str], Sandbox] = OrderedDict()

    async def _load_tools(self) -> list[ToolSpec]:
        result = await self.client.execute_workflow(
            WarmupWorkflow.run,
            WarmupInput(resource_types=[]),
            id=f"http-tools:{time.time_ns()}",
            task_queue=self.task_queue,
            execution_timeout=timedelta(seconds=30),
        )
        return list(result.tools)

    def sandbox(self, who: Caller, worker_id: str) -> Sandbox:
        """The caller's Sandbox for a worker id: the owner is the key's user."""
        key = (who.user_id, who.admin, worker_id)
        found = self._sandboxes.get(key)
        if found is None:
            found = Sandbox(
                worker_id,
                client=self.client,
                user_id=who.user_id,
                admin=who.admin,
                task_queue=self.task_queue,
                session_ttl=self.session_ttl,
                destroy_on_exit=False,
                tools=self.tools,
            )
            self._sandboxes[key] = found
            if len(self._sandboxes) > _SANDBOX_CACHE:
                self._sandboxes.popitem(last=False)
        else:
            self._sandboxes.move_to_end(key)
        return found

    def check_config(self, who: Caller, config: dict[str, Any] | None) -> None:
        """Refuse (403, 4012) a session config above what the caller's key may ask of its
        sandbox (the keys file's options; nothing above the defaults without them), before
        anything starts: a refused request changes nothing."""
        ceiling = who.key.ceiling if who.key is not None else JailCeiling()
        try:
            ceiling.check(config or {}, HTTP_KEY)
        except JailPolicyError as exc:
            data = {"setting": exc.setting, "asked": exc.asked, "allowed": exc.allowed}
            raise ApiError(403, ErrorCode.PERMISSION_DENIED, exc.message, data=data) from None

    @asynccontextmanager
    async def new_session(
        self, who: Caller, worker_id: str, resource_type: str
    ) -> AsyncIterator[Slot]:
        """Refuse (429) a session over the key's limit, else hold its place in the count while
        the block makes it: kept when the block sets ``slot.made``, given back otherwise. An
        existing session may always be opened."""
        slot = Slot()
        workflow_id = session_workflow_id(worker_id, resource_type)
        reserved = False
        if who.user_id is not None:
            limit = self.limits.max_sessions
            if who.key is not None and who.key.max_sessions is not None:
                limit = who.key.max_sessions
            try:
                reserved = await self.quota.reserve(who.user_id, limit, workflow_id)
            except OverQuota as over:
                raise ApiError(
                    429,
                    ErrorCode.QUOTA_EXCEEDED,
                    f"quota exceeded: user {who.user_id!r} has {over.count} live sessions, the "
                    f"most this key allows ({limit}); destroy one or wait for one to expire",
                    data={"limit": limit, "live_sessions": over.count},
                    headers={"Retry-After": str(int(over.retry))},
                ) from None
        try:
            yield slot
        finally:
            if slot.made:
                self.quota.made(who.user_id, workflow_id)
            elif reserved:
                self.quota.gone(who.user_id, workflow_id)


# --- authentication ----------------------------------------------------------------------------


def _presented_key(request: Request) -> str | None:
    """``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or HTTP Basic with the key as the
    password (``http://user:<key>@host/`` in a URL: AgentFlow's client sends that unchanged)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return request.headers.get("x-api-key") or None


async def authenticate(request: Request) -> Caller:
    state: State = request.app.state.api
    if not state.keys.configured:
        return LOCAL
    presented = _presented_key(request)
    entry = state.keys.verify(presented) if presented else None
    if entry is None:
        raise ApiError(
            401,
            ErrorCode.UNAUTHENTICATED,
            "a valid API key is required: send 'Authorization: Bearer <key>'"
            if presented is None
            else "this API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="durable-sessions"'},
        )
    charge(state, entry)
    return Caller(user_id=entry.user_id, admin=entry.admin, key=entry)


def charge(state: State, entry: ApiKey, count: int = 1, *, batch: int = 0) -> None:
    """Take ``count`` requests from the key's rate limit, or refuse (429, 4013). ``batch``: the
    number of actions of a batch being charged (its request was charged already)."""
    rate = entry.rate or state.limits.rate
    burst = entry.burst or max(state.limits.burst, int(rate))
    data: dict[str, Any] = {"rate": rate, "burst": burst}
    if batch > burst:  # no wait would let it through: say so instead of a Retry-After
        raise ApiError(
            429,
            ErrorCode.QUOTA_EXCEEDED,
            f"rate limit: a batch counts each of its actions as a request, and this key may "
            f"send at most {burst} at once; this batch has {batch} actions: split it into "
            f"batches of at most {burst}",
            data={**data, "actions": batch},
        )
    wait = state.rates.take(entry.key_id, rate, burst, count)
    if wait > 0:
        retry = max(1, int(wait + 0.999))
        what = f"this batch of {batch} actions counts {batch} requests; " if batch else ""
        raise ApiError(
            429,
            ErrorCode.QUOTA_EXCEEDED,
            f"rate limit: {what}this key may send {rate:g} requests a second (bursts of "
            f"{burst}); retry in {retry} s",
            data={**data, "actions": batch} if batch else data,
            headers={"Retry-After": str(retry)},
        )


#: The caller of a route, from its API key.
Who = Annotated[Caller, Depends(authenticate)]


def _worker(body: WorkerBody, request: Request) -> str:
    """The sandbox id: the body's ``worker_id``, else the ``X-Worker-ID`` header."""
    worker_id = body.worker_id or request.headers.get("x-worker-id")
    if not worker_id:
        raise ApiError(400, ErrorCode.MISSING_FIELD, "worker_id required")
    if not ID_PATTERN.match(worker_id):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"worker_id {worker_id!r} must be 1-200 letters, digits, '.', '_', '@', ':' or '-'",
        )
    return worker_id


def _scoped(who: Caller, request_id: Any) -> str | None:
    """A caller's request id, made the key's user's own: an update id names one answer in a
    workflow, so another user's id must never reach it (a shared-tools workflow or a temporary
    session is not guarded by an owner)."""
    if not request_id:
        return None
    request_id = str(request_id)
    if who.user_id is None:
        return request_id
    prefix = f"{who.user_id}/"
    return request_id if request_id.startswith(prefix) else prefix + request_id


def _resource(value: str | None, what: str = "resource_type") -> str:
    if not value:
        raise ApiError(400, ErrorCode.MISSING_FIELD, f"worker_id and {what} required")
    if not (len(value) <= 64 and all(c.isalnum() or c in "._-" for c in value)):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"{what} {value[:80]!r} must be 1-64 letters, digits, '.', '_' or '-'",
        )
    return value


# --- bodies: size, shape -------------------------------------------------------------------------


def _too_large(limit: int) -> bytes:
    """The 413 answer's body (code 4009), for runtime.body_limit.BodyLimit."""
    body = envelope(
        ErrorCode.TOO_LARGE,
        f"request body over the limit of {limit} bytes",
        {"limit_bytes": limit},
        tool="http",
    )
    return json.dumps(body).encode()


def _validation_answer(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    kinds = {str(e.get("type", "")) for e in errors}
    if "json_invalid" in kinds:
        code, status = ErrorCode.INVALID_INPUT, 400
        message = "the body is not valid JSON"
    elif kinds and all(k == "missing" for k in kinds):
        code, status = ErrorCode.MISSING_FIELD, 422
        message = "missing field " + ", ".join(_where(e) for e in errors)
    elif kinds == {OUT_OF_RANGE}:  # a number of the right type, out of its range
        code, status = ErrorCode.INVALID_INPUT, 400
        message = "; ".join(str(e.get("msg", "")) for e in errors[:5])
    else:
        code, status = ErrorCode.WRONG_TYPE, 422
        message = "; ".join(f"{_where(e)}: {e.get('msg', '')}" for e in errors[:5])
    problems = [
        {"field": _where(e), "type": e.get("type"), "message": e.get("msg")} for e in errors[:20]
    ]
    body = envelope(code, message, {"errors": problems}, tool="http")
    return _answer(status, body)


def _where(error: Any) -> str:
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    return ".".join(loc) or "body"


# --- the app -------------------------------------------------------------------------------------


def create_app(
    *,
    client: Client | None = None,
    connect: Callable[[], Awaitable[Client]] | None = None,
    keys: KeyStore | None = None,
    limits: Limits | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
    session_ttl: float | None = None,
    config_dir: Path | None = None,
) -> FastAPI:
    """The HTTP API on a Temporal ``client`` (or one ``connect`` makes at startup)."""
    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        temporal = client
        if temporal is None:
            if connect is None:
                raise RuntimeError("create_app needs a Temporal client or a way to connect")
            temporal = await connect()
        app.state.api = State(
            temporal,
            keys or KeyStore(),
            limits,
            task_queue=task_queue,
            session_ttl=session_ttl,
            config_dir=config_dir,
        )
        yield

    app = FastAPI(
        title="durable-sessions",
        description=(
            "AgentFlow's sandbox protocol over durable Temporal sessions. Send your API key as "
            "`Authorization: Bearer <key>`; sessions belong to the key's user."
        ),
        version="1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes, answer=_too_large)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_answer(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = ErrorCode.INVALID_INPUT if exc.status_code < 500 else ErrorCode.INTERNAL
        body = {**envelope(code, str(exc.detail), None, tool="http"), "detail": exc.detail}
        return _answer(exc.status_code, body, dict(exc.headers or {}))

    @app.exception_handler(SessionError)
    async def _session_error(request: Request, exc: SessionError) -> JSONResponse:
        return _answer(http_status(exc.code), envelope(exc.code, exc.message, None, tool="http"))

    @app.exception_handler(RPCError)
    async def _temporal_error(request: Request, exc: RPCError) -> JSONResponse:
        log.warning("%s %s: Temporal refused: %s", request.method, request.url.path, exc)
        message = f"Temporal did not answer ({exc.status.name})"
        return _answer(503, envelope(ErrorCode.UNAVAILABLE, message, None, tool="http"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The server's log has the traceback (uvicorn logs it); the caller gets the code only.
        body = envelope(
            ErrorCode.INTERNAL, f"internal error ({type(exc).__name__})", None, tool="http"
        )
        return _answer(500, body)

    _routes(app)
    return app


def _routes(app: FastAPI) -> None:  # noqa: C901 (one place lists every route)
    authed = [Depends(authenticate)]

    def state_of(request: Request) -> State:
        api: State = request.app.state.api
        return api

    # --- health ------------------------------------------------------------------------------

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        return {"status": "healthy", "timestamp": datetime.now(UTC).isoformat()}

    @app.get("/ready", tags=["health"])
    async def ready(request: Request, who: Who) -> dict[str, Any]:
        state = state_of(request)
        query = "ExecutionStatus = 'Running' AND WorkflowType = 'SessionWorkflow'"
        if who.user_id is not None and not who.admin:
            query += f" AND SessionUserId = '{who.user_id}'"
        sandboxes: set[str] = set()
        total = 0
        async for execution in state.client.list_workflows(query):
            if ":tmp-" not in execution.id:
                total += 1
                sandboxes.add(execution.id.rsplit(":", 1)[0])
        try:
            tools = len(await state.tools.specs())
        except Exception:
            tools = 0
        return {
            "status": "ready",
            "tools_count": tools,
            "active_workers": len(sandboxes),
            "total_sessions": total,
        }

    # --- execute -----------------------------------------------------------------------------

    @app.post("/api/v1/execute", tags=["execute"])
    async def execute(body: ExecuteBody, request: Request, who: Who) -> JSONResponse:
        sandbox = state_of(request).sandbox(who, _worker(body, request))
        result = await sandbox.execute(
            body.action,
            body.params or {},
            body.timeout,
            request_id=_scoped(who, body.request_id or body.message_id),
            session_id=body.session_id,
            trace_id=body.trace_id,
        )
        return _answer(http_status(result["code"]), result)

    @app.post("/api/v1/execute/batch", tags=["execute"])
    async def execute_batch(body: BatchBody, request: Request, who: Who) -> JSONResponse:
        state = state_of(request)
        if who.key is not None and len(body.actions) > 1:  # one was charged with the request
            charge(state, who.key, len(body.actions) - 1, batch=len(body.actions))
        sandbox = state.sandbox(who, _worker(body, request))
        actions = [
            {**a, "request_id": _scoped(who, a.get("request_id"))} if a.get("request_id") else a
            for a in body.actions
        ]
        result = await sandbox.execute_batch(
            actions, body.parallel, body.stop_on_error, trace_id=body.trace_id
        )
        return _answer(http_status(result["code"]), result)

    # --- lifecycle ---------------------------------------------------------------------------

    @app.post("/api/v1/lifecycle/heartbeat", tags=["lifecycle"])
    async def heartbeat(body: WorkerBody, request: Request, who: Who) -> JSONResponse:
        started = time.perf_counter()
        worker_id = _worker(body, request)
        sessions = readable(who, await state_of(request).sandbox(who, worker_id).list_sessions())
        data = {
            "worker_id": worker_id,
            "active_sessions": [s["resource_type"] for s in sessions],
            "timestamp": datetime.now(UTC).isoformat(),
        }
        return _answer(200, _ok(data, "session:heartbeat", started))

    @app.post("/api/v1/lifecycle/status", tags=["lifecycle"])
    async def status(body: WorkerBody, request: Request, who: Who) -> JSONResponse:
        sandbox = state_of(request).sandbox(who, _worker(body, request))
        hidden: set[str] = set()
        if who.user_id is None and not who.admin:  # Sandbox shows such a caller every session
            listed = await sandbox.list_sessions()
            hidden = {s["resource_type"] for s in listed if not may_read(who, s.get("user_id"))}
        return _answer(200, hide(await sandbox.get_status(), hidden))

    @app.post("/api/v1/worker/disconnect", tags=["lifecycle"])
    async def disconnect(body: WorkerBody, request: Request, who: Who) -> JSONResponse:
        started = time.perf_counter()
        state = state_of(request)
        worker_id = _worker(body, request)
        result = await state.sandbox(who, worker_id).destroy_session(None)
        for rt in result["destroyed"]:
            state.quota.gone(who.user_id, session_workflow_id(worker_id, rt))
        data = {"worker_id": worker_id, "sessions_cleaned": result["success"]}
        return _answer(200, _ok(data, "session:disconnect", started))

    # --- sessions ----------------------------------------------------------------------------

    @app.post("/api/v1/session/create", tags=["sessions"])
    async def create_session(body: CreateBody, request: Request, who: Who) -> JSONResponse:
        started = time.perf_counter()
        worker_id = _worker(body, request)
        resource_type = _resource(body.resource_type)
        config = dict(body.session_config or {})
        if body.custom_name:
            config["custom_name"] = body.custom_name
        return await _create(
            state_of(request), who, worker_id, resource_type, config, body.ttl, started
        )

    @app.post("/api/v1/session/destroy", tags=["sessions"])
    async def destroy_session(body: SessionBody, request: Request, who: Who) -> JSONResponse:
        started = time.perf_counter()
        state = state_of(request)
        worker_id = _worker(body, request)
        resource_type = _resource(body.resource_type)
        result = await state.sandbox(who, worker_id).destroy_session(resource_type)
        view = result["destroyed"].get(resource_type)
        if view is None:
            detail = result["details"][resource_type]
            return _session_failure(detail["code"], detail["error"], "session:destroy", started)
        state.quota.gone(who.user_id, session_workflow_id(worker_id, resource_type))
        data = {
            "message": f"Session destroyed for {resource_type}",
            "session_id": view.get("destroyed_session_id"),
            "session_name": view.get("session_name"),
            "resource_type": resource_type,
            "session": view,
        }
        answer = _ok(data, "session:destroy", started, view.get("destroyed_session_id"))
        return _answer(200, answer)

    @app.post("/api/v1/session/list", tags=["sessions"])
    async def list_sessions(body: WorkerBody, request: Request, who: Who) -> JSONResponse:
        started = time.perf_counter()
        worker_id = _worker(body, request)
        sessions = readable(who, await state_of(request).sandbox(who, worker_id).list_sessions())
        data = {"worker_id": worker_id, "sessions": sessions, "count": len(sessions)}
        return _answer(200, _ok(data, "session:list", started))

    @app.post("/api/v1/session/refresh", tags=["sessions"])
    async def refresh_session(body: RefreshBody, request: Request, who: Who) -> JSONResponse:
        started = time.perf_counter()
        worker_id = _worker(body, request)
        sandbox = state_of(request).sandbox(who, worker_id)
        if body.resource_type:
            resource_type = _resource(body.resource_type)
            result = await sandbox.refresh_sessions(resource_type, ttl=body.ttl)
            view = result["refreshed"].get(resource_type)
            if view is None:
                detail = result["details"][resource_type]
                return _session_failure(detail["code"], detail["error"], "session:refresh", started)
            data = {
                "message": f"Session refreshed for {resource_type}",
                "resource_type": resource_type,
                "session_id": view.get("session_id"),
                "expires_at": view.get("expires_at"),
                "session": view,
            }
            return _answer(200, _ok(data, "session:refresh", started, view.get("session_id")))
        result = await sandbox.refresh_sessions(None, ttl=body.ttl)
        data = {
            "message": f"Refreshed {result['refreshed_count']} sessions",
            "worker_id": worker_id,
            "refreshed_count": result["refreshed_count"],
            "details": result["details"],
        }
        return _answer(200, _ok(data, "session:refresh", started))

    @app.post("/api/v1/session/reinitialize", tags=["sessions"])
    async def reinitialize(body: ReinitializeBody, request: Request, who: Who) -> JSONResponse:
        """Ours: a new instance from a new config in the same session (AgentFlow's client does
        destroy + create instead, which works too)."""
        started = time.perf_counter()
        state = state_of(request)
        worker_id = _worker(body, request)
        resource_type = _resource(body.resource_type)
        state.check_config(who, body.config)
        async with state.new_session(who, worker_id, resource_type) as slot:
            result = await state.sandbox(who, worker_id).reinitialize(resource_type, body.config)
            slot.made = result.get("status") == "success"
        code = int(result.get("code", ErrorCode.SUCCESS))
        if result.get("status") == "success":
            code = ErrorCode.SUCCESS
        message = "success" if code == ErrorCode.SUCCESS else str(result.get("message", ""))
        answer = envelope(
            code, message, result, tool="session:reinitialize", started=started,
            resource_type="session", session_id=result.get("new_session_id"),
        )  # fmt: skip
        return _answer(http_status(code), answer)

    @app.post("/api/v1/session/describe", tags=["sessions"])
    async def describe(body: SessionBody, request: Request, who: Who) -> JSONResponse:
        """Ours: one session's whole view (state, instance, deadline, calls, owner)."""
        started = time.perf_counter()
        resource_type = _resource(body.resource_type)
        sandbox = state_of(request).sandbox(who, _worker(body, request))
        view = await sandbox.describe_session(resource_type)
        if view is None:
            return _session_failure(
                ErrorCode.NO_SESSION, f"No session found for {resource_type}", "session:describe",
                started,
            )  # fmt: skip
        check_read(who, view)
        return _answer(200, _ok({"session": view}, "session:describe", started))

    @app.post("/api/v1/session/events", tags=["sessions"])
    async def events(body: EventsBody, request: Request, who: Who) -> JSONResponse:
        """Ours: a page of a session's event log."""
        started = time.perf_counter()
        resource_type = _resource(body.resource_type)
        sandbox = state_of(request).sandbox(who, _worker(body, request))
        query = body.model_dump(include={"start_id", "end_id", "reverse", "kind", "limit"})
        view = await sandbox.describe_session(resource_type)
        if view is not None:  # none: get_events answers "no session" below
            check_read(who, view)
        try:
            page = await sandbox.get_events(resource_type, **query)
        except ValueError as exc:
            raise ApiError(400, ErrorCode.INVALID_INPUT, str(exc)) from None
        except SessionError:
            raise
        except Exception:
            return _session_failure(
                ErrorCode.NO_SESSION, f"No session found for {resource_type}", "session:events",
                started,
            )  # fmt: skip
        return _answer(200, _ok(page, "session:events", started))

    # --- init --------------------------------------------------------------------------------

    @app.post("/api/v1/init/resource", tags=["init"])
    async def init_resource(body: InitResourceBody, request: Request, who: Who) -> JSONResponse:
        started = time.perf_counter()
        worker_id = _worker(body, request)
        resource_type = _resource(body.resource_type)
        return await _create(
            state_of(request), who, worker_id, resource_type, dict(body.init_config or {}), None,
            started, tool="init:resource",
        )  # fmt: skip

    @app.post("/api/v1/init/batch", tags=["init"])
    async def init_batch(body: InitBatchBody, request: Request, who: Who) -> JSONResponse:
        started = time.perf_counter()
        state = state_of(request)
        worker_id = _worker(body, request)
        sandbox = state.sandbox(who, worker_id)
        results: dict[str, Any] = {}
        for resource_type, given in body.resource_configs.items():
            content = given.get("content", given)
            try:
                _resource(resource_type)
                state.check_config(who, dict(content or {}))
                async with state.new_session(who, worker_id, resource_type) as slot:
                    created = await sandbox.create_session(resource_type, dict(content or {}))
                    slot.made = created["status"] in ("success", "exists")
            except ApiError as exc:
                results[resource_type] = {
                    "status": "error",
                    "code": exc.code,
                    "message": exc.message,
                }
                continue
            ok = created["status"] in ("success", "exists")
            results[resource_type] = {
                "status": "success" if ok else "error",
                "session_id": created.get("session_id"),
                "session_status": created.get("session_status"),
                "error": None if ok else created.get("message"),
            }
        succeeded = sum(1 for r in results.values() if r["status"] == "success")
        data = {
            "worker_id": worker_id,
            "results": results,
            "total": len(results),
            "success_count": succeeded,
        }
        if succeeded == len(results):
            code, message = ErrorCode.SUCCESS, "success"
        elif succeeded == 0:
            code, message = ErrorCode.ALL_REQUESTS_FAILED, "All resources failed to initialize"
        else:
            code = ErrorCode.PARTIAL_FAILURE
            message = f"{len(results) - succeeded} out of {len(results)} resources failed"
        answer = envelope(
            code, message, data, tool="init:batch", started=started, resource_type="session"
        )
        return _answer(http_status(code), answer)

    @app.post("/api/v1/init/from-config", tags=["init"])
    async def init_from_config(
        body: InitFromConfigBody, request: Request, who: Who
    ) -> JSONResponse:
        """Reads a JSON config file on the server: only under the server's ``--config-dir``."""
        started = time.perf_counter()
        state = state_of(request)
        if state.config_dir is None:
            raise ApiError(
                403,
                ErrorCode.PERMISSION_DENIED,
                "this server reads no config files for callers (start it with --config-dir)",
            )
        if "\x00" in body.config_path:  # the OS refuses such a path (ValueError, else a 500)
            raise ApiError(
                400, ErrorCode.INVALID_INPUT, "config_path must not contain a NUL character"
            )
        path = (state.config_dir / body.config_path).resolve()
        if not path.is_relative_to(state.config_dir) or not path.is_file():
            return _answer(
                404,
                envelope(
                    ErrorCode.INVALID_INPUT, f"Config file not found: {body.config_path}",
                    {"config_path": body.config_path}, tool="init:from_config", started=started,
                ),
            )  # fmt: skip
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ApiError(400, ErrorCode.INVALID_INPUT, f"{body.config_path}: {exc}") from None
        for key, value in (body.override_params or {}).items():
            if key in config:
                if isinstance(config[key], dict) and isinstance(value, dict):
                    config[key].update(value)
                else:
                    config[key] = value
        data = {"config_loaded": body.config_path, "config": config}
        return _answer(200, _ok(data, "init:from_config", started))

    # --- tools and warmup --------------------------------------------------------------------

    @app.get("/api/v1/tools", tags=["tools"], dependencies=authed)
    async def list_tools(request: Request, include_hidden: bool = False) -> dict[str, Any]:
        specs = await state_of(request).tools.specs()
        tools = [tool_info(s) for s in specs if visible(s, include_hidden)]
        return {"tools": tools, "count": len(tools)}

    @app.get("/api/v1/tools/{tool_name}/schema", tags=["tools"], dependencies=authed)
    async def tool_schema(tool_name: str, request: Request) -> JSONResponse:
        tools = state_of(request).tools
        resolved = await tools.resolve(tool_name)
        spec = await tools.spec(resolved.tool) if resolved.tool else None
        if spec is None:
            body = {
                "status": "error",
                "code": ErrorCode.UNKNOWN_TOOL,
                "message": f"Tool not found: {tool_name}",
            }
            return _answer(404, body)
        return _answer(200, tool_info(spec))

    @app.post("/api/v1/warmup", tags=["tools"])
    async def warmup(request: Request, who: Who, body: WarmupBody | None = None) -> dict[str, Any]:
        state = state_of(request)
        names = body.backends if body is not None else None
        worker_id = request.headers.get("x-worker-id") or "http-warmup"
        if not ID_PATTERN.match(worker_id):
            worker_id = "http-warmup"
        result = await state.sandbox(who, worker_id).warmup(names)
        if result["status"] == "success":
            state.warmed.update(result["warmed"])
        result["summary"] = (await _warmup_status(state))["summary"]
        return result

    @app.get("/api/v1/warmup/status", tags=["tools"], dependencies=authed)
    async def warmup_state(request: Request) -> dict[str, Any]:
        return await _warmup_status(state_of(request))

    # --- server ------------------------------------------------------------------------------

    @app.post("/api/v1/server/shutdown", tags=["server"])
    async def shutdown(
        request: Request, who: Who, body: ShutdownBody | None = None
    ) -> dict[str, Any]:
        """The server serves every user, so it keeps running: this destroys the sessions of the
        caller's sandbox (``X-Worker-ID``) when ``cleanup_sessions``."""
        state = state_of(request)
        cleaned = 0
        worker_id = request.headers.get("x-worker-id")
        if (body is None or body.cleanup_sessions) and worker_id and ID_PATTERN.match(worker_id):
            result = await state.sandbox(who, worker_id).destroy_session(None)
            cleaned = result["success"]
            for rt in result["destroyed"]:
                state.quota.gone(who.user_id, session_workflow_id(worker_id, rt))
        return {
            "status": "success",
            "message": "sessions cleaned; the server keeps running for other callers",
            "sessions_cleaned": cleaned,
        }


async def _create(
    state: State,
    who: Caller,
    worker_id: str,
    resource_type: str,
    config: dict[str, Any],
    ttl: float | None,
    started: float,
    *,
    tool: str = "session:create",
) -> JSONResponse:
    state.check_config(who, config)
    async with state.new_session(who, worker_id, resource_type) as slot:
        result = await state.sandbox(who, worker_id).create_session(resource_type, config, ttl=ttl)
        slot.made = result["sessions"][resource_type]["status"] == "success"
    entry = result["sessions"][resource_type]
    session = {k: v for k, v in result.items() if k not in _SUMMARY_KEYS}
    ok = entry["status"] == "success"
    data: dict[str, Any] = {
        "session_id": result.get("session_id"),
        "session_name": entry.get("session_name"),
        "resource_type": resource_type,
        "session_status": result.get("session_status"),
        "error": entry.get("error"),
        "created": bool(result.get("created")),
        "session": session,
    }
    if ok and not result.get("created"):
        data["status"] = "exists"
    if ok:
        answer = _ok(data, tool, started, result.get("session_id"))
        return _answer(200, answer)
    code = int(result.get("code", ErrorCode.NO_SESSION))
    message = "Session creation failed: " + str(result.get("message") or entry.get("error"))
    answer = envelope(
        code, message, data, tool=tool, started=started, resource_type="session",
        session_id=result.get("session_id"),
    )  # fmt: skip
    # AgentFlow answers a failed creation with 500; a refusal keeps its own status.
    status = 500 if code == ErrorCode.NO_SESSION else http_status(code)
    return _answer(status, answer)


_SUMMARY_KEYS = frozenset({"create_time_ms", "total", "success", "sessions"})


def _ok(data: Any, tool: str, started: float, session_id: str | None = None) -> dict[str, Any]:
    return envelope(
        ErrorCode.SUCCESS, "success", data, tool=tool, started=started, resource_type="session",
        session_id=session_id,
    )  # fmt: skip


def _session_failure(code: int, message: str, tool: str, started: float) -> JSONResponse:
    """No session (404, AgentFlow's), or a refusal with its own status."""
    status = 404 if code == ErrorCode.NO_SESSION else http_status(code)
    answer = envelope(code, message, None, tool=tool, started=started, resource_type="session")
    return _answer(status, answer)


async def _warmup_status(state: State) -> dict[str, Any]:
    try:
        backends = {s.resource_type for s in await state.tools.specs()}
    except Exception:
        backends = set()
    return warmup_status(backends | state.warmed, state.warmed)
