"""Sandbox: the seed-compatible client. One sandbox owns at most one session per resource type.

It also takes AgentFlow's constructor, calls and answer shapes, so code written for AgentFlow's
``Sandbox`` runs unchanged: with ``server_url=`` it talks HTTP to our server (``durable-sessions
http``), otherwise straight to Temporal.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from datetime import timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from opentelemetry import trace as otel_trace
from pydantic import ValidationError
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from client.agentflow import (
    SessionList,
    batch_answer,
    create_answer,
    create_entry,
    envelope,
    session_name,
    tool_info,
    visible,
    warmup_status,
    with_names,
)
from client.catalog import ToolCatalog, timeout_param
from client.errors import PermissionDenied, SessionError, code_of, error_envelope, printable
from client.http_engine import HttpEngine
from client.private_loop import PrivateLoop
from client.streams import follow_call, watch_output
from client.transport import (
    CALL_SLACK,
    QUERY_TIMEOUT,
    SessionGone,
    call_problem,
    call_timeout,
    checked_id,
    send,
    tracked,
)
from client.workflow_api import SessionWorkflows
from client.workspace_files import DOWNLOAD_CHUNK_BYTES, UPLOAD_CHUNK_BYTES, download, upload
from contract import (
    DEFAULT_TASK_QUEUE,
    DEFAULT_TTL_SECONDS,
    DestroyRequest,
    Envelope,
    EnvelopeMeta,
    ErrorCode,
    EventsQuery,
    ExecuteRequest,
    OpenRequest,
    OutputChunk,
    RefreshRequest,
    ReinitializeRequest,
    RenameRequest,
    ResourceTypeAttr,
    SandboxIdAttr,
    SessionInput,
    SessionStatus,
    SessionSummary,
    SessionView,
    SharedToolsInput,
    ToolSpec,
    WarmupInput,
    session_workflow_id,
    shared_tools_workflow_id,
    split_tool_name,
    temporary_workflow_id,
)
from contract.limits import MAX_TOOL_TIMEOUT, MAX_TTL_SECONDS, number_problem, timeout_problem
from runtime.connection import connect
from runtime.telemetry import span
from workflows import SessionWorkflow, SharedToolsWorkflow, WarmupWorkflow

T = TypeVar("T")

#: AgentFlow's Sandbox options that have no meaning here (it starts its own server process;
#: ours runs as a service): accepted so AgentFlow code runs, and otherwise ignored.
AGENTFLOW_ONLY_OPTIONS = frozenset(
    {
        "auto_start_server",
        "server_config_path",
        "server_startup_timeout",
        "server_check_interval",
        "log_level",
    }
)
#: How long a tool list answers before a new one is asked for, in seconds.
_TOOLS_TIMEOUT = timedelta(seconds=30)


def _ttl_from(config: Mapping[str, Any] | None, session_ttl: float | None) -> float:
    """The session TTL from the argument, the config or ``$SESSION_TTL``; ValueError when it is
    not a finite number of seconds in range."""
    value: Any = session_ttl
    if value is None:
        value = (config or {}).get("server", {}).get("session_ttl")
    if value is None:
        value = float(os.environ.get("SESSION_TTL", DEFAULT_TTL_SECONDS))
    problem = number_problem("session_ttl", value, MAX_TTL_SECONDS)
    if problem is not None:
        raise ValueError(problem)
    return float(value)


class Sandbox:
    """A client identity whose sessions are durable Temporal workflows.

    Args:
        sandbox_id: The identity; a second Sandbox with the same id sees the same sessions.
            ``worker_id`` is accepted as the seed's name for it. Generated when absent. A URL
            here (AgentFlow's first argument) is taken as ``server_url``.
        address: Temporal address; default ``$TEMPORAL_ADDRESS``, then ``localhost:7233``.
        namespace: Temporal namespace; default ``$TEMPORAL_NAMESPACE``, then ``default``.
        config: ``{"server": {"session_ttl": ...}}``, or an AgentFlow ``SandboxConfig`` (its
            ``server_url``, ``worker_id``, ``timeout``, ``retry_count`` and
            ``warmup_resources`` are read).
        user_id, agent_id, metadata: The owner and facts recorded on every session made here
            (see SessionManager for owner-scoped access).
        admin: Requests reach every user's sessions (operators' tools; off by default).
        session_ttl: Seconds an idle session lives (default ``config["server"]["session_ttl"]``,
            then ``$SESSION_TTL``, then 300).
        destroy_on_exit: ``async with`` destroys the sessions this client created on exit.
        client: An already connected Temporal client to use.
        server_url: Talk HTTP to our server at this URL instead of Temporal (the server sets the
            owner from the API key: ``api_key``, default ``$DURABLE_SESSIONS_API_KEY``).
        timeout: HTTP only: seconds a request may take at least (a call waits its own tool
            timeout plus 60 s when that is longer).
        retry_count: HTTP only: attempts for a request that cannot connect or times out.
        warmup_resources: Backends ``start()`` warms.
        tools: A tool catalog to share between many Sandboxes (the HTTP server's).
        after_expiry: What ``execute`` does when this sandbox's session of that resource type
            expired or failed: ``"error"`` (default) answers 4010 saying when and why, since
            its state is gone; ``"temporary"`` runs the call in a fresh temporary session, as
            AgentFlow does (its meta says ``temporary_session``). A session that was never
            made, or that was destroyed, always falls back to a temporary one.
    """

    def __init__(
        self,
        sandbox_id: str | None = None,
        address: str | None = None,
        namespace: str | None = None,
        *,
        worker_id: str | None = None,
        config: Any = None,
        session_ttl: float | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        user_id: str | None = None,
        agent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        admin: bool = False,
        destroy_on_exit: bool = True,
        client: Client | None = None,
        server_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry_count: int = 3,
        warmup_resources: Iterable[str] | None = None,
        tools: ToolCatalog | None = None,
        after_expiry: Literal["error", "temporary"] = "error",
        **agentflow_options: Any,
    ) -> None:
        unknown = sorted(set(agentflow_options) - AGENTFLOW_ONLY_OPTIONS)
        if unknown:
            raise TypeError(f"Sandbox() got unexpected keyword arguments {unknown}")
        if config is not None and not isinstance(config, Mapping):
            # AgentFlow's SandboxConfig: its fields, unless given as arguments.
            server_url = server_url or getattr(config, "server_url", None)
            worker_id = worker_id or getattr(config, "worker_id", None)
            timeout = getattr(config, "timeout", None) or timeout
            retry_count = getattr(config, "retry_count", None) or retry_count
            warmup_resources = warmup_resources or getattr(config, "warmup_resources", None)
            config = None
        if sandbox_id and sandbox_id.startswith(("http://", "https://")):
            server_url, sandbox_id = server_url or sandbox_id, None
        self.sandbox_id = checked_id(
            sandbox_id or worker_id or f"sandbox-{uuid.uuid4().hex[:12]}", "sandbox_id"
        )
        self.address = address
        self.namespace = namespace
        self.session_ttl = _ttl_from(config, session_ttl)
        self.task_queue = task_queue
        self.user_id = user_id
        self.agent_id = agent_id
        self.metadata = dict(metadata or {})
        self.admin = admin
        self.destroy_on_exit = destroy_on_exit
        self.after_expiry = after_expiry
        self.server_url = server_url
        self.timeout = float(timeout)
        self.warmup_resources = list(warmup_resources or [])
        self._client = client
        self._http = (
            HttpEngine(
                server_url,
                worker_id=self.sandbox_id,
                api_key=api_key,
                timeout=self.timeout,
                retry_count=retry_count,
                session_ttl=self.session_ttl,
            )
            if server_url
            else None
        )
        self._started = False
        self._created: set[str] = set()
        #: Resource types known to be shared (learnt from warmup or from a first answer).
        self._shared: set[str] = set()
        #: Backends warmed through this client.
        self._warmed: set[str] = set()
        self._tools = tools or ToolCatalog(self._load_tools)
        #: Where the ``*_sync`` methods run, started on first use.
        self._sync = PrivateLoop(f"sandbox-{self.sandbox_id}")

    # --- connection --------------------------------------------------------------------------

    async def start(self, warmup_resources: Iterable[str] | None = None) -> Sandbox:
        """Connect to Temporal, or check that the HTTP server answers (raises if it cannot be
        reached); then warm ``warmup_resources`` (default: the constructor's)."""
        if self._http is not None:
            await self._http.start()
        elif self._client is None:
            self._client = await connect(self.address, self.namespace)
        first = not self._started
        self._started = True
        names = list(warmup_resources or (self.warmup_resources if first else []))
        if names:
            await self.warmup(names)
        return self

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError(
                "Sandbox is not started: use `async with Sandbox()` or `await start()`"
            )
        return self._client

    @property
    def worker_id(self) -> str:
        """AgentFlow's name for ``sandbox_id``."""
        return self.sandbox_id

    @property
    def is_started(self) -> bool:
        return self._started

    @property
    def is_connected(self) -> bool:
        if self._http is not None:
            return self._started
        return self._client is not None

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.destroy_on_exit and self.is_connected and self._created:
            await self.destroy_session(sorted(self._created))
        await self.close()

    async def close(self) -> None:
        """Close the client only; sessions live on until their TTL."""
        if self._http is not None:
            await self._http.close()
        else:
            self._client = None
        self._started = False

    # --- sessions ----------------------------------------------------------------------------

    async def create_session(
        self,
        resource_type: str | Iterable[str] | Mapping[str, Mapping[str, Any] | None],
        config: Mapping[str, Any] | None = None,
        *,
        ttl: float | None = None,
    ) -> dict[str, Any]:
        """Create a session (or several); an existing one answers with its status.

        A ``custom_name`` key in a config names the session (``session_name``); ``ttl`` is the
        new sessions' TTL (default the sandbox's ``session_ttl``). AgentFlow's
        answer: ``status``, ``create_time_ms``, ``total``, ``success`` and ``sessions`` (one line
        per resource type). For one type the session's own fields are at the top too, with
        ``status`` ``success``, ``exists`` or ``error``; for several ``status`` is ``success``,
        ``partial`` or ``error``.
        """
        started = time.perf_counter()
        if isinstance(resource_type, str):
            wanted = {resource_type: dict(config or {})}
        elif isinstance(resource_type, Mapping):
            wanted = {k: dict(v or {}) for k, v in resource_type.items()}
        else:
            wanted = {k: dict(config or {}) for k in resource_type}
        configs = {k: {n: v for n, v in c.items() if n != "custom_name"} for k, c in wanted.items()}
        opened = await asyncio.gather(
            *(
                self._open_checked(k, configs[k], str(wanted[k].get("custom_name") or ""), ttl)
                for k in wanted
            )
        )
        entries = {k: create_entry(o, configs[k]) for k, o in zip(wanted, opened, strict=True)}
        single = opened[0] if isinstance(resource_type, str) else None
        return create_answer(entries, started, single=single)

    async def _open_checked(
        self, resource_type: str, config: dict[str, Any], name: str, ttl: float | None = None
    ) -> dict[str, Any]:
        """``_open``, where a refusal (permission, bad input) is an answer, not an exception."""
        try:
            return await self._open(resource_type, config, name, ttl)
        except SessionError as exc:
            if exc.code == ErrorCode.UNAVAILABLE:
                raise
            message = exc.message
            code = exc.code
        except (ValidationError, ValueError) as exc:
            message, code = str(exc), ErrorCode.INVALID_INPUT
        return {
            "status": "error",
            "code": code,
            "message": message,
            "resource_type": resource_type,
            "sandbox_id": self.sandbox_id,
            "session_id": None,
            "name": name,
        }

    async def _open(
        self, resource_type: str, config: dict[str, Any], name: str = "", ttl: float | None = None
    ) -> dict[str, Any]:
        if self._http is not None:
            out = await self._http.open(resource_type, config, name, ttl)
            if out.get("status") != "error":
                self._created.add(resource_type)
            return out
        request_id = uuid.uuid4().hex
        inp = SessionInput(
            sandbox_id=self.sandbox_id,
            resource_type=resource_type,
            config=config,
            ttl_seconds=self.session_ttl if ttl is None else ttl,
            user_id=self.user_id,
            agent_id=self.agent_id,
            name=name,
            metadata=self.metadata,
            opened_by=request_id,
        )
        view = await send(
            lambda: self.client.execute_update_with_start_workflow(
                SessionWorkflow.open,
                OpenRequest(request_id=request_id, user_id=self.user_id, admin=self.admin),
                start_workflow_operation=self._start_operation(
                    inp, self._workflow_id(resource_type)
                ),
                rpc_timeout=CALL_SLACK * 3,
            ),
            client=self.client,
            task_queue=self.task_queue,
        )
        self._created.add(resource_type)
        out = _view_dict(view)
        if view.status is SessionStatus.ERROR:
            out["status"] = "error"
            out["code"] = view.error_code or ErrorCode.INITIALIZE_FAILED
        else:
            out["status"] = "success" if view.created else "exists"
        out["session_status"] = view.status.value
        return out

    async def execute(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        *,
        request_id: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Run a tool; always answers with an envelope dict.

        Uses the sandbox's live session for the tool's resource type, or a temporary session
        when there is none. ``action`` is ``"<resource>:<action>"``, or an action only one
        resource has (``"run"``). ``request_id`` (generated when absent) is the Temporal update
        id: a retried call with the same id runs once. ``session_id`` pins the call to one
        instance. ``timeout`` (AgentFlow's): the tool's own ``timeout`` parameter when it has
        one, else how long to wait for the answer (code 5006 after it; the call goes on).
        Other keyword arguments are added to ``params`` (AgentFlow's rule); ``trace_id`` is
        answered in ``meta`` (default: the call's OpenTelemetry trace, or a new id).
        """
        request_id = request_id or uuid.uuid4().hex
        problem = call_problem(action, params, kwargs)
        if problem is not None:
            return _refused(action, problem, request_id, session_id, trace_id)
        merged = _merged_params(params, kwargs)
        return await self._call(action, merged, timeout, request_id, session_id, trace_id)

    async def execute_stream(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        *,
        request_id: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[OutputChunk | dict[str, Any]]:
        """Run a tool as :meth:`execute` does and see its output while it runs: ``OutputChunk``s
        (``text`` printed on ``stream``, ``stdout`` or ``stderr``; a ``note`` when the live output
        stops early), then the envelope dict :meth:`execute` answers (with all the output).

        The output comes through the sandbox's session of the tool's resource type (create it
        first). A call answered elsewhere (a temporary session, a shared tool, over HTTP) yields
        its envelope only. Each chunk's ``offset`` is its place in the session's stream, where
        another reader can :meth:`watch` from.
        """
        request_id = request_id or uuid.uuid4().hex
        problem = call_problem(action, params, kwargs)
        if problem is not None:
            yield _refused(action, problem, request_id, session_id, trace_id)
            return
        merged = _merged_params(params, kwargs)
        answer = asyncio.ensure_future(
            self._call(action, merged, timeout, request_id, session_id, trace_id, stream=True)
        )
        target = None if self._http is not None else await self._stream_target(action)
        if target is None:
            yield await answer
            return
        async for item in follow_call(self.client, target, request_id, answer):
            yield item

    def watch(
        self, resource_type: str, from_offset: int = 0, *, request_id: str | None = None
    ) -> AsyncIterator[OutputChunk]:
        """The live output of this sandbox's session of ``resource_type`` (every streaming call's,
        or one's: ``request_id``) from ``from_offset`` on, as it arrives; resume from the last
        chunk's ``offset`` + 1. Ends when the session has closed (see
        :func:`client.streams.watch_output`, which takes any session's workflow id)."""
        return watch_output(
            self.client, self._workflow_id(resource_type), from_offset, request_id=request_id
        )

    async def _stream_target(self, action: str) -> str | None:
        """The workflow whose stream carries a call's live output: the sandbox's session of the
        tool's resource type (None for a shared tool, or a name that does not resolve)."""
        if ":" not in action:
            try:
                action = (await self._tools.resolve(action)).tool or ""
            except Exception:
                return None
        resource_type = action.partition(":")[0]
        if not resource_type or resource_type in self._shared:
            return None
        return self._workflow_id(resource_type)

    async def _call(
        self,
        action: str,
        merged: dict[str, Any],
        timeout: float | None,
        request_id: str,
        session_id: str | None,
        trace_id: str | None,
        *,
        stream: bool = False,
    ) -> dict[str, Any]:
        if self._http is not None:
            return await self._execute_http(
                action, merged, timeout, request_id, session_id, trace_id
            )
        attributes = {
            "session.tool": action,
            "session.sandbox_id": self.sandbox_id,
            "session.request_id": request_id,
            "session.trace_id": trace_id,
        }
        with span(f"execute {action}", attributes) as current:
            result = await self._execute_resolved(
                action, merged, timeout, request_id, session_id, stream=stream
            )
            current.set_attribute("session.result_code", result["code"])
            if result["meta"].get("session_id"):
                current.set_attribute("session.id", result["meta"]["session_id"])
            result["meta"]["trace_id"] = trace_id or _trace_id(current)
            return result

    async def _execute_http(
        self,
        action: str,
        params: dict[str, Any],
        timeout: float | None,
        request_id: str,
        session_id: str | None,
        trace_id: str | None,
    ) -> dict[str, Any]:
        assert self._http is not None
        body = {
            "action": action,
            "params": params,
            "timeout": timeout,
            "request_id": request_id,
            "session_id": session_id,
            "trace_id": trace_id,
        }
        return await self._http.execute(body, self._wait_for(params, timeout))

    def _wait_for(self, params: Mapping[str, Any], timeout: float | None) -> float:
        """How long an HTTP call may take: the constructor's timeout, or the call's own bound
        plus slack when that is longer."""
        own = call_timeout(params).total_seconds()
        if isinstance(timeout, int | float) and math.isfinite(timeout):
            own = max(own, float(timeout) + CALL_SLACK.total_seconds())
        return max(self.timeout, own)

    async def _execute_resolved(
        self,
        action: str,
        params: dict[str, Any],
        timeout: float | None,
        request_id: str,
        session_id: str | None,
        *,
        stream: bool = False,
    ) -> dict[str, Any]:
        meta = EnvelopeMeta(tool=action, request_id=request_id, session_id=session_id)
        if ":" not in action:
            try:
                resolved = await self._tools.resolve(action)
            except Exception as exc:
                message = f"cannot list the tools to read {action!r} (is a worker running?): {exc}"
                return error_envelope(ErrorCode.UNAVAILABLE, message, meta).model_dump(mode="json")
            if resolved.tool is None:
                answer = error_envelope(resolved.code, resolved.message, meta)
                answer.data = resolved.data
                return answer.model_dump(mode="json")
            action = resolved.tool
        wait: float | None = None
        if timeout is not None:
            problem = number_problem("timeout", timeout, MAX_TOOL_TIMEOUT)
            if problem is not None:
                wrong = isinstance(timeout, bool) or not isinstance(timeout, int | float)
                code = ErrorCode.WRONG_TYPE if wrong else ErrorCode.INVALID_INPUT
                return error_envelope(code, f"{action}: {problem}", meta).model_dump(mode="json")
            if "timeout" not in params and await self._takes_timeout(action):
                params["timeout"] = timeout
            elif "timeout" not in params:
                wait = float(timeout)
        if wait is None:
            return await self._execute_any(action, params, request_id, session_id, stream)
        call = asyncio.create_task(
            self._execute_any(action, params, request_id, session_id, stream)
        )
        done, _ = await asyncio.wait({call}, timeout=wait)
        if done:
            return call.result()
        # Stop waiting only: the update goes on in the workflow, whatever happens to this task.
        call.cancel()
        with contextlib.suppress(BaseException):
            await call
        meta.tool = action
        message = (
            f"no answer within {wait:g} s; the call goes on in its session: send it again "
            f"with request_id {request_id!r} for its answer"
        )
        return error_envelope(ErrorCode.TIMEOUT, message, meta).model_dump(mode="json")

    async def _takes_timeout(self, action: str) -> bool:
        try:
            return timeout_param(await self._tools.spec(action))
        except Exception:
            return False

    async def _execute_any(
        self,
        action: str,
        params: Mapping[str, Any] | None,
        request_id: str,
        session_id: str | None,
        stream: bool = False,
    ) -> dict[str, Any]:
        meta = EnvelopeMeta(tool=action, request_id=request_id, session_id=session_id)
        try:
            resource_type, _ = split_tool_name(action)
            req = ExecuteRequest(
                tool=action,
                params=dict(params or {}),
                request_id=request_id,
                session_id=session_id,
                user_id=self.user_id,
                admin=self.admin,
                stream=stream,
            )
            timeout = timeout_problem(req.params)
            if timeout is not None:
                code, problem = timeout
                return error_envelope(code, f"{action}: {problem}", meta).model_dump(mode="json")
        except ValidationError as exc:  # params not JSON values, ids or sizes out of range
            return error_envelope(ErrorCode.INVALID_INPUT, str(exc), meta).model_dump(mode="json")
        except (ValueError, TypeError) as exc:
            code = ErrorCode.UNKNOWN_TOOL if "tool name" in str(exc) else ErrorCode.INVALID_INPUT
            return error_envelope(code, str(exc), meta).model_dump(mode="json")
        meta.resource_type = resource_type
        if resource_type in self._shared:
            envelope = await self._execute_shared(req, meta)
        else:
            envelope = await self._execute(resource_type, req, meta)
            if envelope.meta.shared:
                self._shared.add(resource_type)
        return envelope.model_dump(mode="json")

    async def _execute_shared(self, req: ExecuteRequest, meta: EnvelopeMeta) -> Envelope:
        try:
            return await send(
                lambda: self.client.execute_update_with_start_workflow(
                    SharedToolsWorkflow.execute,
                    req,
                    start_workflow_operation=self._shared_start_operation(),
                    id=req.request_id,
                    rpc_timeout=call_timeout(req.params),
                ),
                client=self.client,
                task_queue=self.task_queue,
            )
        except SessionError as exc:
            return error_envelope(exc.code, exc.message, meta)

    def _shared_start_operation(self) -> WithStartWorkflowOperation[Any, Any]:
        # A fresh operation per attempt: one cannot be reused.
        operation = WithStartWorkflowOperation(
            SharedToolsWorkflow.run,
            SharedToolsInput(sandbox_id=self.sandbox_id),
            id=shared_tools_workflow_id(self.sandbox_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SandboxIdAttr, self.sandbox_id),
                    SearchAttributePair(ResourceTypeAttr, "shared"),
                ]
            ),
            static_summary=f"shared tools of sandbox {self.sandbox_id}",
        )
        return tracked(operation)

    async def _execute(
        self, resource_type: str, req: ExecuteRequest, meta: EnvelopeMeta
    ) -> Envelope:
        handle = self._handle(resource_type)
        rpc_timeout = call_timeout(req.params)
        try:
            return await send(
                lambda: handle.execute_update(
                    SessionWorkflow.execute, req, id=req.request_id, rpc_timeout=rpc_timeout
                ),
                client=self.client,
                task_queue=self.task_queue,
            )
        except SessionGone as exc:
            if req.session_id is not None:
                return error_envelope(
                    ErrorCode.NO_SESSION,
                    f"no live {resource_type} session {req.session_id!r} "
                    f"in sandbox {self.sandbox_id}",
                    meta,
                )
            # No session ever ran here: nothing ended to explain (one round trip less).
            ended_run = not exc.never_ran
        except SessionError as exc:
            if exc.code != ErrorCode.SESSION_CLOSED or req.session_id is not None:
                return error_envelope(exc.code, exc.message, meta)
            ended_run = True
        ask = ended_run and self.after_expiry == "error"
        ended = await self._ended_by_itself(handle) if ask else None
        if ended is not None:
            return error_envelope(ErrorCode.SESSION_CLOSED, ended, meta)
        # No live session and none pinned: the call runs in a temporary one.
        return await self._execute_temporary(resource_type, req, meta)

    async def _ended_by_itself(self, handle: WorkflowHandle[Any, Any]) -> str | None:
        """Why the session ended, when it expired or failed (its state is gone: a temporary
        session would answer as if nothing happened); None when it never existed, was
        destroyed, or is closing."""
        try:
            described = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
            if described.status in (None, WorkflowExecutionStatus.RUNNING):
                return None
            summary: SessionSummary = await handle.result(rpc_timeout=QUERY_TIMEOUT)
        except Exception:  # never existed, deleted, or not a session's result
            return None
        if summary.status not in (SessionStatus.EXPIRED, SessionStatus.ERROR):
            return None
        when = f" at {described.close_time:%Y-%m-%d %H:%M:%S} UTC" if described.close_time else ""
        return (
            f"session {handle.id} {summary.status.value}{when} ({summary.reason}); its state is "
            "gone. Create a new session, or use Sandbox(after_expiry='temporary') to run calls "
            "in temporary sessions instead"
        )

    async def _execute_temporary(
        self, resource_type: str, req: ExecuteRequest, meta: EnvelopeMeta
    ) -> Envelope:
        # A resource type the workers' tool list (when this client has a fresh one) does not
        # have is answered here: a temporary session would only start to answer the same.
        offered = self._tools.resource_types()
        if offered is not None and resource_type not in offered:
            message = (
                f"unknown tool {req.tool!r}: no worker offers resource type {resource_type!r} "
                f"(offered: {', '.join(sorted(offered)) or 'none'})"
            )
            return error_envelope(ErrorCode.UNKNOWN_TOOL, message, meta)
        workflow_id = temporary_workflow_id(self.sandbox_id, resource_type, req.request_id)
        inp = SessionInput(
            sandbox_id=self.sandbox_id,
            resource_type=resource_type,
            ttl_seconds=max(self.session_ttl, call_timeout(req.params).total_seconds()),
            temporary=True,
            user_id=self.user_id,
            agent_id=self.agent_id,
        )
        # REJECT_DUPLICATE: a retry after the temporary session ended must not run the tool again.
        # A fresh start operation per attempt: one cannot be reused.
        try:
            return await send(
                lambda: self.client.execute_update_with_start_workflow(
                    SessionWorkflow.execute,
                    req,
                    start_workflow_operation=self._start_operation(
                        inp, workflow_id, reuse=WorkflowIDReusePolicy.REJECT_DUPLICATE
                    ),
                    id=req.request_id,
                    rpc_timeout=call_timeout(req.params),
                ),
                client=self.client,
                task_queue=self.task_queue,
            )
        except WorkflowAlreadyStartedError:
            summary: SessionSummary = await self.client.get_workflow_handle_for(
                SessionWorkflow.run, workflow_id
            ).result()
            if summary.last_envelope is not None:
                return summary.last_envelope
            return error_envelope(
                ErrorCode.INTERNAL, "temporary session ended with no answer", meta
            )
        except SessionError as exc:
            return error_envelope(exc.code, exc.message, meta)

    async def execute_batch(
        self,
        actions: Iterable[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
        *,
        trace_id: str | None = None,
    ) -> dict[str, Any]:
        """Several calls, ``{"action", "params", "timeout"}`` each, one after another (stopping
        at the first failure when ``stop_on_error``) or all at once (``parallel``).

        Answers an envelope whose ``data`` has ``results`` (one envelope per call run),
        ``total``, ``executed`` and ``success_count``; its code is 0, 5009 (none succeeded) or
        5010 (some failed).
        """
        items = [dict(a) if isinstance(a, Mapping) else {"action": a} for a in actions]
        trace_id = trace_id or uuid.uuid4().hex
        if self._http is not None:
            body = {"actions": items, "parallel": parallel, "stop_on_error": stop_on_error}
            wait = sum(self._wait_for(dict(i.get("params") or {}), None) for i in items)
            return await self._http.execute_batch({**body, "trace_id": trace_id}, wait)
        started = time.perf_counter()
        if parallel:
            results = list(await asyncio.gather(*(self._batch_call(i, trace_id) for i in items)))
        else:
            results = []
            for item in items:
                results.append(await self._batch_call(item, trace_id))
                if stop_on_error and results[-1]["code"] != ErrorCode.SUCCESS:
                    break
        return batch_answer(results, len(items), started, trace_id)

    async def _batch_call(self, item: dict[str, Any], trace_id: str) -> dict[str, Any]:
        action, params = item.get("action"), item.get("params")
        if not isinstance(action, str) or not isinstance(params, Mapping | None):
            meta = EnvelopeMeta(tool=str(action))
            message = "each action is {'action': str, 'params': {...}, 'timeout': seconds}"
            answer = error_envelope(ErrorCode.INVALID_INPUT, message, meta)
            return {
                **answer.model_dump(mode="json"),
                "meta": {**meta.model_dump(), "trace_id": trace_id},
            }
        return await self.execute(
            action,
            params,
            item.get("timeout"),
            request_id=item.get("request_id"),
            trace_id=trace_id,
        )

    async def refresh_sessions(
        self, resource_type: str | Iterable[str] | None = None, *, ttl: float | None = None
    ) -> dict[str, Any]:
        """Move the deadline of one, several or all of this sandbox's sessions.

        Answers ``status`` (success, partial, not_found), ``refreshed`` (the views),
        ``not_found``, and AgentFlow's ``refreshed_count``, ``details`` (``expires_at`` per
        type), plus ``expires_at`` and ``session_id`` at the top for one type.
        """
        refreshed: dict[str, Any] = {}
        missing: list[str] = []
        details: dict[str, Any] = {}
        for rt in await self._types(resource_type):
            try:
                refreshed[rt] = view = with_names(await self._refresh(rt, ttl))
                details[rt] = {"status": "refreshed", "expires_at": view["expires_at"]}
            except SessionError as exc:
                if _unanswered(exc):
                    raise
                missing.append(rt)
                details[rt] = {"status": "error", "code": exc.code, "error": exc.message}
            except RPCError as exc:
                missing.append(rt)
                details[rt] = {"status": "error", "code": ErrorCode.NO_SESSION, "error": str(exc)}
        status = "success" if not missing else ("partial" if refreshed else "not_found")
        failed = [d for d in details.values() if d["status"] == "error"]
        answer: dict[str, Any] = {
            "status": status,
            "code": failed[0]["code"] if failed and not refreshed else ErrorCode.SUCCESS,
            "message": f"Refreshed {len(refreshed)} sessions"
            + "".join(f"; {rt}: {d['error']}" for rt, d in details.items() if d in failed),
            "refreshed": refreshed,
            "not_found": missing,
            "refreshed_count": len(refreshed),
            "details": details,
        }
        if isinstance(resource_type, str):
            one = refreshed.get(resource_type, {})
            answer["resource_type"] = resource_type
            answer["session_id"] = one.get("session_id")
            answer["expires_at"] = one.get("expires_at")
        return answer

    async def _refresh(self, resource_type: str, ttl: float | None) -> dict[str, Any]:
        if self._http is not None:
            return await self._http.refresh(resource_type, ttl)
        handle = self._handle(resource_type)
        view = await send(
            lambda: handle.execute_update(
                SessionWorkflow.refresh,
                RefreshRequest(ttl_seconds=ttl, user_id=self.user_id, admin=self.admin),
                rpc_timeout=CALL_SLACK,
            ),
            client=self.client,
            task_queue=self.task_queue,
        )
        return _view_dict(view)

    async def reinitialize(
        self, resource_type: str, config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Replace a session's instance with one made from ``config``; other sessions untouched.

        Answers ``status``, ``old_session_id``, ``new_session_id``, ``config_applied`` and
        AgentFlow's ``resource_type``, ``new_session_name``, ``reinit_time_ms`` (``error`` when
        it failed). A ``custom_name`` key renames the session.
        """
        started = time.perf_counter()
        wanted = dict(config or {})
        name = str(wanted.pop("custom_name", "") or "")
        result = await self._reinitialize(resource_type, wanted, name)
        result["resource_type"] = resource_type
        result["reinit_time_ms"] = (time.perf_counter() - started) * 1000
        if result.get("status") == "error":
            result.setdefault("error", result.get("message", ""))
        return result

    async def _reinitialize(
        self, resource_type: str, config: dict[str, Any], name: str
    ) -> dict[str, Any]:
        if self._http is not None:
            if name:
                config = {**config, "custom_name": name}
            return await self._http.reinitialize(resource_type, config)
        req = ReinitializeRequest(
            config=config, request_id=uuid.uuid4().hex, user_id=self.user_id, admin=self.admin
        )
        try:
            result = await send(
                lambda: self._handle(resource_type).execute_update(
                    SessionWorkflow.reinitialize, req, id=req.request_id, rpc_timeout=CALL_SLACK * 3
                ),
                client=self.client,
                task_queue=self.task_queue,
            )
            answer = result.model_dump(mode="json")
            if name and result.status == "success":
                renamed = await send(
                    lambda: self._handle(resource_type).execute_update(
                        SessionWorkflow.rename,
                        RenameRequest(name=name, user_id=self.user_id, admin=self.admin),
                        rpc_timeout=CALL_SLACK,
                    ),
                    client=self.client,
                    task_queue=self.task_queue,
                )
                answer["new_session_name"] = session_name(_view_dict(renamed))
            elif result.status == "success":
                current = await self._describe(self._workflow_id(resource_type))
                answer["new_session_name"] = session_name(
                    _view_dict(current)
                    if current
                    else {"resource_type": resource_type, "sandbox_id": self.sandbox_id}
                )
            return answer
        except SessionGone:
            pass
        except SessionError as exc:
            if _unanswered(exc):
                raise
            if exc.code != ErrorCode.SESSION_CLOSED:
                return {"status": "error", "code": exc.code, "message": exc.message}
        # No live session: reinitializing one is creating it with the new config.
        view = await self._open_checked(resource_type, req.config, name)
        return {
            "status": "success" if view["status"] != "error" else "error",
            "old_session_id": None,
            "new_session_id": view["session_id"],
            "new_session_name": session_name(view),
            "config_applied": req.config,
            **({"code": view["code"], "message": view["message"]} if "code" in view else {}),
        }

    async def list_sessions(self) -> SessionList:
        """This sandbox's live sessions (from Temporal visibility plus the ones made here): a
        list, as AgentFlow answers, each with ``resource_type``, ``session_id``,
        ``session_name``, ``status``, ``expires_at`` and the session's whole view; the earlier
        ``answer["sessions"]`` still works. A Sandbox with a ``user_id`` sees no other user's."""
        if self._http is not None:
            return SessionList(await self._http.list_sessions())
        ids = {self._workflow_id(rt) for rt in self._created}
        query = (
            f"{SandboxIdAttr.name} = '{self.sandbox_id}' AND ExecutionStatus = 'Running' "
            f"AND WorkflowType = 'SessionWorkflow'"
        )
        async for execution in self.client.list_workflows(query):
            ids.add(execution.id)
        views = await asyncio.gather(*(self._describe(wid) for wid in sorted(ids)))
        return SessionList(
            with_names({**_view_dict(v), "status": v.status.value})
            for v in views
            if v is not None
            and not v.temporary
            and not v.status.is_final
            and self._may_see(v.user_id)
        )

    def _may_see(self, owner: str | None) -> bool:
        return self.admin or owner is None or self.user_id is None or owner == self.user_id

    async def describe_session(self, resource_type: str) -> dict[str, Any] | None:
        """The full view of one session (state, instance, deadline, calls), or None. Raises
        PermissionDenied for another user's session."""
        if self._http is not None:
            return await self._http.describe(resource_type)
        view = await self._describe(self._workflow_id(resource_type))
        if view is None:
            return None
        self._check_reader(view)
        return _view_dict(view)

    def _check_reader(self, view: SessionView) -> None:
        if not self._may_see(view.user_id):
            raise PermissionDenied(
                ErrorCode.PERMISSION_DENIED,
                f"permission denied: user {self.user_id!r} does not own session {view.workflow_id}",
            )

    async def get_events(self, resource_type: str, **query: Any) -> dict[str, Any]:
        """A page of a session's event log (start_id, end_id, reverse, kind, limit <= 100)."""
        if self._http is not None:
            return await self._http.events(resource_type, query)
        events = EventsQuery(**query)
        if self.user_id is not None and not self.admin:
            view = await self._describe(self._workflow_id(resource_type))
            if view is not None:
                self._check_reader(view)
        page = await self._handle(resource_type).query(
            SessionWorkflow.events, events, rpc_timeout=QUERY_TIMEOUT
        )
        return page.model_dump(mode="json")

    async def destroy_session(
        self, resource_type: str | Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Destroy one, several or all (None) of this sandbox's sessions; cleanup runs first.

        Answers AgentFlow's ``status`` (success, or partial when one was missing or refused),
        ``total``, ``success``, ``details`` (per type: status, session_id, message), and our
        ``destroyed`` (the final views) and ``not_found``.
        """
        destroyed: dict[str, Any] = {}
        missing: list[str] = []
        details: dict[str, Any] = {}
        for rt in await self._types(resource_type):
            try:
                view = with_names(await self._destroy(rt))
                destroyed[rt] = view
                details[rt] = {
                    "status": "success",
                    "session_id": view.get("destroyed_session_id"),
                    "session_name": view.get("session_name"),
                    "message": f"Session destroyed for {rt}",
                }
            except SessionError as exc:
                if _unanswered(exc):
                    raise
                missing.append(rt)
                details[rt] = {"status": "error", "code": exc.code, "error": exc.message}
            self._created.discard(rt)
        return {
            "status": "success" if len(destroyed) == len(details) else "partial",
            "total": len(details),
            "success": len(destroyed),
            "details": details,
            "destroyed": destroyed,
            "not_found": missing,
        }

    async def _destroy(self, resource_type: str) -> dict[str, Any]:
        if self._http is not None:
            return await self._http.destroy(resource_type)
        handle = self._handle(resource_type)
        before = await self._describe(handle.id)  # the instance's id, gone once destroyed
        view = await send(
            lambda: handle.execute_update(
                SessionWorkflow.destroy,
                DestroyRequest(user_id=self.user_id, admin=self.admin),
                rpc_timeout=CALL_SLACK * 2,
            ),
            client=self.client,
            task_queue=self.task_queue,
        )
        out = _view_dict(view)
        out["destroyed_session_id"] = view.session_id or (before.session_id if before else None)
        return out

    async def warmup(self, resources: str | Iterable[str] | None = None) -> dict[str, Any]:
        """Warm backends on a worker (all when None) before the first call needs them.

        Args:
            resources: one resource type (``"bash"``), several (``["bash", "rag"]``), or None.

        Answers ``status`` (success or error), ``warmed``, ``worker``, ``tools``, and AgentFlow's
        ``results`` (name: warmed), ``summary`` (and ``errors`` when it failed).
        """
        if isinstance(resources, str):
            names: list[str] | None = [resources]  # a str is one name, not its characters
        else:
            names = list(resources) if resources is not None else None
        if self._http is not None:
            return await self._http.warmup(names)
        try:
            result = await self.client.execute_workflow(
                WarmupWorkflow.run,
                WarmupInput(resource_types=names),
                id=f"{self.sandbox_id}:warmup:{uuid.uuid4().hex[:8]}",
                task_queue=self.task_queue,
                execution_timeout=timedelta(minutes=15),
            )
        except Exception as exc:
            code, message = code_of(exc)
            failed = names or []
            return {
                "status": "error",
                "code": code,
                "message": message,
                "results": {n: False for n in failed},
                "errors": {n: message for n in failed},
                "summary": await self._warmup_summary(),
            }
        self._shared.update(t.resource_type for t in result.tools if t.shared)
        self._warmed.update(result.warmed)
        self._tools.update(result.tools)
        return {
            "status": "success",
            "warmed": result.warmed,
            "worker": result.worker,
            "tools": [t.model_dump(mode="json") for t in result.tools],
            "results": {n: True for n in result.warmed},
            "summary": (await self._warmup_summary())["summary"],
        }

    async def get_warmup_status(self) -> dict[str, Any]:
        """Every backend the workers offer, and whether it was warmed through this client:
        ``{"backends": {name: {"loaded", "warmed_up"}}, "summary": {...}}``."""
        if self._http is not None:
            return dict(await self._http.get("/api/v1/warmup/status"))
        return await self._warmup_summary()

    async def _warmup_summary(self) -> dict[str, Any]:
        try:
            backends = {s.resource_type for s in await self._tools.specs()}
        except Exception:
            backends = set()
        return warmup_status(backends | self._warmed, self._warmed)

    async def get_tools(self, include_hidden: bool = False) -> list[dict[str, Any]]:
        """Every tool the workers offer, as AgentFlow lists them (``name``, ``full_name``,
        ``resource_type``, ``stateless``, ``description``) plus ``params_schema``."""
        if self._http is not None:
            flag = "true" if include_hidden else "false"
            answer = await self._http.get(f"/api/v1/tools?include_hidden={flag}")
            return list(answer.get("tools", []))
        return [tool_info(s) for s in await self._tools.specs() if visible(s, include_hidden)]

    async def get_tool_schema(self, tool_name: str) -> dict[str, Any] | None:
        """One tool (full or simple name), as ``get_tools`` lists it; None when unknown."""
        if self._http is not None:
            answer = await self._http.get(f"/api/v1/tools/{quote(tool_name, safe=':')}/schema")
            return dict(answer) if "full_name" in answer else None
        resolved = await self._tools.resolve(tool_name)
        spec = await self._tools.spec(resolved.tool) if resolved.tool else None
        return tool_info(spec) if spec else None

    async def get_status(self) -> dict[str, Any]:
        """AgentFlow's status envelope: ``data`` has ``worker_id``, ``active_resources``,
        ``sessions`` (per type: session_id, status, created_at, last_activity) and
        ``tools_available``."""
        if self._http is not None:
            _, answer = await self._http.post("/api/v1/lifecycle/status", {})
            return dict(answer)
        started = time.perf_counter()
        sessions = await self.list_sessions()
        try:
            tools = len(await self._tools.specs())
        except Exception:
            tools = 0
        data = {
            "worker_id": self.sandbox_id,
            "active_resources": [s["resource_type"] for s in sessions],
            "sessions": {
                s["resource_type"]: {
                    "session_id": s.get("session_id"),
                    "session_name": s.get("session_name"),
                    "status": s.get("status"),
                    "created_at": s.get("created_at"),
                    "last_activity": s.get("last_activity"),
                    "expires_at": s.get("expires_at"),
                }
                for s in sessions
            },
            "tools_available": tools,
        }
        return envelope(
            ErrorCode.SUCCESS, "success", data, tool="session:status", started=started,
            resource_type="session",
        )  # fmt: skip

    async def shutdown_server(self) -> dict[str, Any]:
        """Destroy every session of this sandbox. Workers keep running for other sandboxes;
        each runs its backends' ``shutdown`` when it stops."""
        return await self.destroy_session(None)

    # --- AgentFlow's synchronous flavour -----------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on this Sandbox's private event loop, so the ``*_sync`` calls work with or
        without an event loop in the caller. Use either them or the async calls on one
        Sandbox: its connection belongs to the loop that made it."""
        return self._sync.run(coro)

    def start_sync(self, warmup_resources: Iterable[str] | None = None) -> Sandbox:
        return self._run(self.start(warmup_resources))

    def warmup_sync(self, resources: str | Iterable[str] | None = None) -> dict[str, Any]:
        return self._run(self.warmup(resources))

    def get_warmup_status_sync(self) -> dict[str, Any]:
        return self._run(self.get_warmup_status())

    def create_session_sync(
        self,
        resource_type: str | Iterable[str] | Mapping[str, Mapping[str, Any] | None],
        config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._run(self.create_session(resource_type, config))

    def destroy_session_sync(
        self, resource_type: str | Iterable[str] | None = None
    ) -> dict[str, Any]:
        return self._run(self.destroy_session(resource_type))

    def list_sessions_sync(self) -> SessionList:
        return self._run(self.list_sessions())

    def execute_sync(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return self._run(self.execute(action, params, timeout, **kwargs))

    def execute_batch_sync(
        self,
        actions: Iterable[Mapping[str, Any]],
        parallel: bool = False,
        stop_on_error: bool = True,
    ) -> dict[str, Any]:
        return self._run(self.execute_batch(actions, parallel, stop_on_error))

    def reinitialize_sync(
        self, resource_type: str, config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._run(self.reinitialize(resource_type, config))

    def refresh_sessions_sync(
        self, resource_type: str | Iterable[str] | None = None
    ) -> dict[str, Any]:
        return self._run(self.refresh_sessions(resource_type))

    def get_tools_sync(self, include_hidden: bool = False) -> list[dict[str, Any]]:
        return self._run(self.get_tools(include_hidden))

    def get_status_sync(self) -> dict[str, Any]:
        return self._run(self.get_status())

    def shutdown_server_sync(self) -> dict[str, Any]:
        return self._run(self.shutdown_server())

    def close_sync(self) -> None:
        try:
            if self._sync.started:
                self._run(self.close())
        finally:
            self._sync.stop()

    def __enter__(self) -> Sandbox:
        return self.start_sync()

    def __exit__(self, *exc: object) -> None:
        try:
            self._run(self.__aexit__(*exc))
        finally:
            self._sync.stop()

    # --- helpers -----------------------------------------------------------------------------

    async def _load_tools(self) -> list[ToolSpec]:
        """Every tool a worker offers: a warmup that warms nothing."""
        if self._http is not None:
            raise RuntimeError("the HTTP server resolves tool names itself")
        result = await self.client.execute_workflow(
            WarmupWorkflow.run,
            WarmupInput(resource_types=[]),
            id=f"{self.sandbox_id}:tools:{uuid.uuid4().hex[:8]}",
            task_queue=self.task_queue,
            execution_timeout=_TOOLS_TIMEOUT,
        )
        return list(result.tools)

    def _workflow_id(self, resource_type: str) -> str:
        return session_workflow_id(self.sandbox_id, resource_type)

    def _handle(self, resource_type: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle_for(
            SessionWorkflow.run, self._workflow_id(resource_type)
        )

    async def _types(self, resource_type: str | Iterable[str] | None) -> list[str]:
        if isinstance(resource_type, str):
            return [resource_type]
        if resource_type is not None:
            return list(resource_type)
        return [s["resource_type"] for s in await self.list_sessions()]

    async def _describe(self, workflow_id: str) -> SessionView | None:
        handle = self.client.get_workflow_handle_for(SessionWorkflow.run, workflow_id)
        try:
            return await handle.query(SessionWorkflow.describe, rpc_timeout=QUERY_TIMEOUT)
        except Exception:
            return None  # closed meanwhile, or never existed

    def _start_operation(
        self,
        inp: SessionInput,
        workflow_id: str,
        *,
        reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    ) -> WithStartWorkflowOperation[Any, Any]:
        kind = "temporary " if inp.temporary else ""
        return SessionWorkflows(self.client, self.task_queue).start_operation(
            inp,
            workflow_id,
            summary=f"{kind}{inp.resource_type} session of sandbox {inp.sandbox_id}",
            reuse=reuse,
        )

    # --- files in a session's workspace ------------------------------------------------------

    async def upload(
        self,
        local: str | os.PathLike[str],
        remote: str,
        resource_type: str = "bash",
        *,
        chunk_bytes: int = UPLOAD_CHUNK_BYTES,
    ) -> dict[str, Any]:
        """Copy a local file into the workspace of this sandbox's ``resource_type`` session.

        Sent as ``<resource_type>:write_file`` calls of ``chunk_bytes`` each (base64; a call's
        parameters are at most 1 MiB), each written at its offset, so a retried chunk is
        harmless; chunks over 256 KiB leave history through external storage. The workspace's
        snapshot waits for the last chunk. ``remote`` is relative to the workspace or absolute
        inside it. Returns the last call's data (``path``, ``size``); raises
        :class:`SessionError` with the envelope's code when a call fails.
        """
        return await upload(self.execute, local, remote, resource_type, chunk_bytes)

    async def download(
        self,
        remote: str,
        local: str | os.PathLike[str],
        resource_type: str = "bash",
        *,
        chunk_bytes: int = DOWNLOAD_CHUNK_BYTES,
    ) -> dict[str, Any]:
        """Copy a file of the ``resource_type`` session's workspace to ``local`` (replaced once
        complete), in ``<resource_type>:read_file`` calls of ``chunk_bytes`` each (at most
        4 MiB; answers over 256 KiB leave history through external storage). Returns ``path``
        and ``size``; raises :class:`SessionError` when a call fails or the file changed
        size meanwhile."""
        return await download(self.execute, remote, local, resource_type, chunk_bytes)


def _merged_params(params: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the other keyword arguments of a call added (AgentFlow's rule)."""
    merged = dict(params or {})
    for key, value in extra.items():
        if key not in merged and value is not None:
            merged[key] = value
    return merged


def _refused(
    action: Any, problem: str, request_id: str, session_id: str | None, trace_id: str | None
) -> dict[str, Any]:
    """The envelope of a call refused before anything was sent (``call_problem``)."""
    meta = EnvelopeMeta(tool=printable(action), request_id=request_id, session_id=session_id)
    answer = error_envelope(ErrorCode.INVALID_INPUT, problem, meta).model_dump(mode="json")
    answer["meta"]["trace_id"] = trace_id or uuid.uuid4().hex
    return answer


def _unanswered(exc: SessionError) -> bool:
    """No worker answered in time: refresh, reinitialize and destroy raise it (it says
    nothing about whether the session exists)."""
    return exc.code == ErrorCode.UNAVAILABLE


def _view_dict(view: SessionView) -> dict[str, Any]:
    return view.model_dump(mode="json")


def _trace_id(current: otel_trace.Span) -> str:
    """The call's OpenTelemetry trace id when tracing records, else a new id."""
    context = current.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else uuid.uuid4().hex
