"""Sandbox: the seed-compatible client. One sandbox owns at most one session per resource type."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from client.errors import SessionError, code_of, error_envelope
from client.transport import (
    CALL_SLACK,
    QUERY_TIMEOUT,
    SessionGone,
    call_timeout,
    checked_id,
    send,
    session_start_operation,
)
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
    RefreshRequest,
    ReinitializeRequest,
    ResourceTypeAttr,
    SandboxIdAttr,
    SessionInput,
    SessionStatus,
    SessionSummary,
    SessionView,
    SharedToolsInput,
    WarmupInput,
    session_workflow_id,
    shared_tools_workflow_id,
    split_tool_name,
    temporary_workflow_id,
)
from contract.limits import MAX_TTL_SECONDS, number_problem, timeout_problem
from runtime.connection import connect
from runtime.telemetry import span
from workflows import SessionWorkflow, SharedToolsWorkflow, WarmupWorkflow


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
            ``worker_id`` is accepted as the seed's name for it. Generated when absent.
        address: Temporal address; default ``$TEMPORAL_ADDRESS``, then ``localhost:7233``.
        namespace: Temporal namespace; default ``$TEMPORAL_NAMESPACE``, then ``default``.
        user_id, agent_id, metadata: The owner and facts recorded on every session made here
            (see SessionManager for owner-scoped access).
        session_ttl: Seconds an idle session lives (default ``config["server"]["session_ttl"]``,
            then ``$SESSION_TTL``, then 300).
        destroy_on_exit: ``async with`` destroys the sessions this client created on exit.
        client: An already connected Temporal client to use.
    """

    def __init__(
        self,
        sandbox_id: str | None = None,
        address: str | None = None,
        namespace: str | None = None,
        *,
        worker_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        session_ttl: float | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        user_id: str | None = None,
        agent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        destroy_on_exit: bool = True,
        client: Client | None = None,
    ) -> None:
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
        self.destroy_on_exit = destroy_on_exit
        self._client = client
        self._created: set[str] = set()
        #: Resource types known to be shared (learnt from warmup or from a first answer).
        self._shared: set[str] = set()

    # --- connection --------------------------------------------------------------------------

    async def start(self) -> Sandbox:
        """Connect to Temporal (raises if it cannot be reached)."""
        if self._client is None:
            self._client = await connect(self.address, self.namespace)
        return self

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError(
                "Sandbox is not started: use `async with Sandbox()` or `await start()`"
            )
        return self._client

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.destroy_on_exit and self._client is not None and self._created:
            await self.destroy_session(sorted(self._created))
        await self.close()

    async def close(self) -> None:
        """Close the client only; sessions live on until their TTL."""
        self._client = None

    # --- sessions ----------------------------------------------------------------------------

    async def create_session(
        self,
        resource_type: str | Iterable[str] | Mapping[str, Mapping[str, Any] | None],
        config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a session (or several); an existing one answers with its status.

        One type answers with that session's view; a list or dict answers ``{"sessions": {...}}``.
        """
        if isinstance(resource_type, str):
            return await self._open(resource_type, dict(config or {}))
        if isinstance(resource_type, Mapping):
            wanted = {k: dict(v or {}) for k, v in resource_type.items()}
        else:
            wanted = {k: dict(config or {}) for k in resource_type}
        views = await asyncio.gather(*(self._open(k, v) for k, v in wanted.items()))
        return {"sessions": dict(zip(wanted, views, strict=True))}

    async def _open(self, resource_type: str, config: dict[str, Any]) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        inp = SessionInput(
            sandbox_id=self.sandbox_id,
            resource_type=resource_type,
            config=config,
            ttl_seconds=self.session_ttl,
            user_id=self.user_id,
            agent_id=self.agent_id,
            metadata=self.metadata,
            opened_by=request_id,
        )
        view = await self.client.execute_update_with_start_workflow(
            SessionWorkflow.open,
            OpenRequest(request_id=request_id, user_id=self.user_id),
            start_workflow_operation=self._start_operation(inp, self._workflow_id(resource_type)),
            rpc_timeout=CALL_SLACK * 3,
        )
        self._created.add(resource_type)
        out = _view_dict(view)
        if view.status is SessionStatus.ERROR:
            out["status"] = "error"
            out["code"] = ErrorCode.INITIALIZE_FAILED
        else:
            out["status"] = "success" if view.created else "exists"
        out["session_status"] = view.status.value
        return out

    async def execute(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """Run a tool; always answers with an envelope dict.

        Uses the sandbox's live session for the tool's resource type, or a temporary session
        when there is none. ``request_id`` (generated when absent) is the Temporal update id: a
        retried call with the same id runs once. ``session_id`` pins the call to one instance.
        """
        request_id = request_id or uuid.uuid4().hex
        attributes = {
            "session.tool": action,
            "session.sandbox_id": self.sandbox_id,
            "session.request_id": request_id,
        }
        with span(f"execute {action}", attributes) as trace:
            result = await self._execute_any(action, params, request_id, session_id)
            trace.set_attribute("session.result_code", result["code"])
            if result["meta"].get("session_id"):
                trace.set_attribute("session.id", result["meta"]["session_id"])
            return result

    async def _execute_any(
        self,
        action: str,
        params: Mapping[str, Any] | None,
        request_id: str,
        session_id: str | None,
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
                )
            )
        except SessionError as exc:
            return error_envelope(exc.code, exc.message, meta)

    def _shared_start_operation(self) -> WithStartWorkflowOperation[Any, Any]:
        # A fresh operation per attempt: one cannot be reused.
        return WithStartWorkflowOperation(
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

    async def _execute(
        self, resource_type: str, req: ExecuteRequest, meta: EnvelopeMeta
    ) -> Envelope:
        handle = self._handle(resource_type)
        rpc_timeout = call_timeout(req.params)
        try:
            return await send(
                lambda: handle.execute_update(
                    SessionWorkflow.execute, req, id=req.request_id, rpc_timeout=rpc_timeout
                )
            )
        except SessionGone:
            if req.session_id is not None:
                return error_envelope(
                    ErrorCode.NO_SESSION,
                    f"no live {resource_type} session {req.session_id!r} "
                    f"in sandbox {self.sandbox_id}",
                    meta,
                )
        except SessionError as exc:
            if exc.code != ErrorCode.SESSION_CLOSED or req.session_id is not None:
                return error_envelope(exc.code, exc.message, meta)
        # No live session and none pinned: the call runs in a temporary one.
        return await self._execute_temporary(resource_type, req, meta)

    async def _execute_temporary(
        self, resource_type: str, req: ExecuteRequest, meta: EnvelopeMeta
    ) -> Envelope:
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
                )
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

    async def refresh_sessions(
        self, resource_type: str | Iterable[str] | None = None, *, ttl: float | None = None
    ) -> dict[str, Any]:
        """Move the deadline of one, several or all of this sandbox's sessions."""
        refreshed: dict[str, Any] = {}
        missing: list[str] = []
        for rt in await self._types(resource_type):
            try:
                handle = self._handle(rt)
                view = await send(
                    lambda: handle.execute_update(  # noqa: B023 (awaited in this iteration)
                        SessionWorkflow.refresh,
                        RefreshRequest(ttl_seconds=ttl, user_id=self.user_id),
                        rpc_timeout=CALL_SLACK,
                    )
                )
                refreshed[rt] = _view_dict(view)
            except SessionError as exc:
                if _unanswered(exc):
                    raise
                missing.append(rt)
            except RPCError:
                missing.append(rt)
        status = "success" if not missing else ("partial" if refreshed else "not_found")
        return {"status": status, "refreshed": refreshed, "not_found": missing}

    async def reinitialize(
        self, resource_type: str, config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Replace a session's instance with one made from ``config``; other sessions untouched."""
        req = ReinitializeRequest(
            config=dict(config or {}), request_id=uuid.uuid4().hex, user_id=self.user_id
        )
        try:
            result = await send(
                lambda: self._handle(resource_type).execute_update(
                    SessionWorkflow.reinitialize, req, id=req.request_id, rpc_timeout=CALL_SLACK * 3
                )
            )
            return result.model_dump(mode="json")
        except SessionGone:
            pass
        except SessionError as exc:
            if _unanswered(exc):
                raise
            if exc.code != ErrorCode.SESSION_CLOSED:
                return {"status": "error", "code": exc.code, "message": exc.message}
        # No live session: reinitializing one is creating it with the new config.
        view = await self._open(resource_type, req.config)
        return {
            "status": "success" if view["status"] != "error" else "error",
            "old_session_id": None,
            "new_session_id": view["session_id"],
            "config_applied": req.config,
        }

    async def list_sessions(self) -> dict[str, Any]:
        """This sandbox's live sessions, from Temporal visibility plus the ones made here."""
        ids = {self._workflow_id(rt) for rt in self._created}
        query = (
            f"{SandboxIdAttr.name} = '{self.sandbox_id}' AND ExecutionStatus = 'Running' "
            f"AND WorkflowType = 'SessionWorkflow'"
        )
        async for execution in self.client.list_workflows(query):
            ids.add(execution.id)
        views = await asyncio.gather(*(self._describe(wid) for wid in sorted(ids)))
        sessions = [
            {**_view_dict(v), "status": v.status.value}
            for v in views
            if v is not None and not v.temporary and not v.status.is_final
        ]
        return {"sessions": sessions}

    async def describe_session(self, resource_type: str) -> dict[str, Any] | None:
        """The full view of one session (state, instance, deadline, calls), or None."""
        view = await self._describe(self._workflow_id(resource_type))
        return _view_dict(view) if view else None

    async def get_events(self, resource_type: str, **query: Any) -> dict[str, Any]:
        """A page of a session's event log (start_id, end_id, reverse, kind, limit <= 100)."""
        page = await self._handle(resource_type).query(
            SessionWorkflow.events, EventsQuery(**query), rpc_timeout=QUERY_TIMEOUT
        )
        return page.model_dump(mode="json")

    async def destroy_session(
        self, resource_type: str | Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Destroy one, several or all (None) of this sandbox's sessions; cleanup runs first."""
        destroyed: dict[str, Any] = {}
        missing: list[str] = []
        for rt in await self._types(resource_type):
            try:
                handle = self._handle(rt)
                view = await send(
                    lambda: handle.execute_update(  # noqa: B023 (awaited in this iteration)
                        SessionWorkflow.destroy,
                        DestroyRequest(user_id=self.user_id),
                        rpc_timeout=CALL_SLACK * 2,
                    )
                )
                destroyed[rt] = _view_dict(view)
            except SessionError as exc:
                if _unanswered(exc):
                    raise
                missing.append(rt)
            self._created.discard(rt)
        return {"status": "success", "destroyed": destroyed, "not_found": missing}

    async def warmup(self, resources: str | Iterable[str] | None = None) -> dict[str, Any]:
        """Warm backends on a worker (all when None) before the first call needs them.

        Args:
            resources: one resource type (``"bash"``), several (``["bash", "rag"]``), or None.
        """
        if isinstance(resources, str):
            names: list[str] | None = [resources]  # a str is one name, not its characters
        else:
            names = list(resources) if resources is not None else None
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
            return {"status": "error", "code": code, "message": message}
        self._shared.update(t.resource_type for t in result.tools if t.shared)
        return {
            "status": "success",
            "warmed": result.warmed,
            "worker": result.worker,
            "tools": [t.model_dump(mode="json") for t in result.tools],
        }

    async def shutdown_server(self) -> dict[str, Any]:
        """Destroy every session of this sandbox. Workers keep running for other sandboxes;
        each runs its backends' ``shutdown`` when it stops."""
        return await self.destroy_session(None)

    # --- helpers -----------------------------------------------------------------------------

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
        listed = await self.list_sessions()
        return [s["resource_type"] for s in listed["sessions"]]

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
        return session_start_operation(
            inp,
            workflow_id,
            self.task_queue,
            summary=f"{kind}{inp.resource_type} session of sandbox {inp.sandbox_id}",
            reuse=reuse,
        )


def _unanswered(exc: SessionError) -> bool:
    """No worker answered in time: refresh, reinitialize and destroy raise it (it says
    nothing about whether the session exists)."""
    return exc.code == ErrorCode.UNAVAILABLE


def _view_dict(view: SessionView) -> dict[str, Any]:
    return view.model_dump(mode="json")
