"""A Sandbox's engine straight to Temporal: its calls as the typed gateway's
(``client.workflow_api``), answered in the dicts ``client.engine`` describes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any

from temporalio.client import Client

from client.agentflow import (
    batch_answer,
    opened,
    reinitialized_by_open,
    session_name,
    status_answer,
    tool_info,
    visible,
    warmup_answer,
    warmup_failed,
    warmup_status,
    with_names,
)
from client.catalog import ToolCatalog, session_tools
from client.engine import SandboxIdentity, open_checked, refused
from client.errors import PermissionDenied, SessionError, code_of, error_envelope
from client.forking import Child, fork_sessions
from client.tool_calls import ToolCalls
from client.transport import SessionGone, call_problem
from client.workflow_api import SessionQuery, SessionWorkflows
from contract import (
    DestroyRequest,
    EnvelopeMeta,
    ErrorCode,
    EventsQuery,
    OpenRequest,
    RefreshRequest,
    ReinitializeRequest,
    RenameRequest,
    SessionInput,
    SessionStatus,
    SessionView,
    ToolSpec,
    session_workflow_id,
)
from runtime.connection import connect


class TemporalEngine:
    """One Sandbox's calls on Temporal.

    Args:
        owner: The Sandbox (who it acts for, how its sessions live).
        client: An already connected client; else one is connected by ``start``.
        tools: A tool catalog shared between many Sandboxes (the HTTP server's).
    """

    def __init__(
        self,
        owner: SandboxIdentity,
        address: str | None = None,
        namespace: str | None = None,
        *,
        client: Client | None = None,
        tools: ToolCatalog | None = None,
    ) -> None:
        self.owner = owner
        self.address = address
        self.namespace = namespace
        self._client = client
        self.created: set[str] = set()
        #: Backends warmed through this client.
        self.warmed: set[str] = set()
        self.catalog = tools or ToolCatalog(self._load_tools)
        self.calls = ToolCalls(owner, lambda: self.workflows, self.catalog, set())

    # --- connection --------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError(
                "Sandbox is not started: use `async with Sandbox()` or `await start()`"
            )
        return self._client

    @property
    def workflows(self) -> SessionWorkflows:
        return SessionWorkflows(self.client, self.owner.task_queue)

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        if self._client is None:
            self._client = await connect(self.address, self.namespace)

    async def close(self) -> None:
        self._client = None

    def _workflow_id(self, resource_type: str) -> str:
        return session_workflow_id(self.owner.sandbox_id, resource_type)

    # --- sessions ----------------------------------------------------------------------------

    async def open(
        self,
        resource_type: str,
        config: dict[str, Any],
        name: str,
        ttl: float | None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        owner = self.owner
        request_id = uuid.uuid4().hex
        inp = SessionInput(
            sandbox_id=owner.sandbox_id,
            resource_type=resource_type,
            config=config,
            ttl_seconds=owner.session_ttl if ttl is None else ttl,
            user_id=owner.user_id,
            agent_id=owner.agent_id,
            name=name,
            metadata=owner.metadata,
            opened_by=request_id,
            **{k: v for k, v in (options or {}).items() if v is not None},
        )
        view = await self.workflows.open(
            inp,
            OpenRequest(request_id=request_id, user_id=owner.user_id, admin=owner.admin),
            workflow_id=self._workflow_id(resource_type),
            summary=f"{resource_type} session of sandbox {owner.sandbox_id}",
        )
        self.created.add(resource_type)
        failed = view.status is SessionStatus.ERROR
        dumped = view.model_dump(mode="json")
        return opened(dumped, created=view.created, failed=failed, code=view.error_code)

    async def fork(
        self, resource_type: str, n: int, from_checkpoint: str | None, ttl: float | None
    ) -> list[dict[str, Any]]:
        """``n`` sessions from this sandbox's ``resource_type`` session, each in a new sandbox
        (``client.forking``); their views."""
        owner = self.owner
        children = [Child.of_sandbox(owner.sandbox_id, resource_type) for _ in range(n)]
        views = await fork_sessions(
            self.workflows,
            self._workflow_id(resource_type),
            children,
            from_checkpoint=from_checkpoint,
            ttl=ttl,
            user_id=owner.user_id,
            admin=owner.admin,
        )
        return [v.model_dump(mode="json") for v in views]

    async def refresh(self, resource_type: str, ttl: float | None) -> dict[str, Any]:
        req = RefreshRequest(ttl_seconds=ttl, user_id=self.owner.user_id, admin=self.owner.admin)
        view = await self.workflows.refresh(self._workflow_id(resource_type), req)
        return view.model_dump(mode="json")

    async def destroy(self, resource_type: str) -> dict[str, Any]:
        workflow_id = self._workflow_id(resource_type)
        before = await self.workflows.find(workflow_id)  # the instance's id, gone once destroyed
        req = DestroyRequest(user_id=self.owner.user_id, admin=self.owner.admin)
        view = await self.workflows.destroy(workflow_id, req)
        out = view.model_dump(mode="json")
        out["destroyed_session_id"] = view.session_id or (before.session_id if before else None)
        return out

    async def reinitialize(
        self, resource_type: str, config: dict[str, Any], name: str
    ) -> dict[str, Any]:
        owner = self.owner
        workflow_id = self._workflow_id(resource_type)
        req = ReinitializeRequest(
            config=config, request_id=uuid.uuid4().hex, user_id=owner.user_id, admin=owner.admin
        )
        try:
            result = await self.workflows.reinitialize(workflow_id, req)
            answer = result.model_dump(mode="json")
            if result.status == "success":
                answer["new_session_name"] = await self._new_name(resource_type, name)
            return answer
        except SessionGone:
            pass
        except SessionError as exc:
            if exc.code == ErrorCode.UNAVAILABLE:
                raise
            if exc.code != ErrorCode.SESSION_CLOSED:
                return {"status": "error", "code": exc.code, "message": exc.message}
        # No live session: reinitializing one is creating it with the new config.
        made = await open_checked(self, owner.sandbox_id, resource_type, req.config, name)
        return reinitialized_by_open(made, req.config)

    async def _new_name(self, resource_type: str, name: str) -> str:
        """The reinitialized session's name: ``name`` given to it, or the one it has."""
        workflow_id = self._workflow_id(resource_type)
        if name:
            req = RenameRequest(name=name, user_id=self.owner.user_id, admin=self.owner.admin)
            renamed = await self.workflows.rename(workflow_id, req)
            return session_name(renamed.model_dump(mode="json"))
        current = await self.workflows.find(workflow_id)
        if current is not None:
            return session_name(current.model_dump(mode="json"))
        return session_name({"resource_type": resource_type, "sandbox_id": self.owner.sandbox_id})

    async def list_sessions(self) -> list[dict[str, Any]]:
        """This sandbox's live sessions (visibility's, plus the ones made here, which it may not
        list yet), temporary ones and other users' left out."""
        ids = {self._workflow_id(rt) for rt in self.created}
        ids |= await self.workflows.ids(SessionQuery(sandbox_id=self.owner.sandbox_id))
        views = await asyncio.gather(*(self.workflows.find(wid) for wid in sorted(ids)))
        return [
            with_names({**v.model_dump(mode="json"), "status": v.status.value})
            for v in views
            if v is not None
            and not v.temporary
            and not v.status.is_final
            and self._may_see(v.user_id)
        ]

    def _may_see(self, owner: str | None) -> bool:
        me = self.owner
        return me.admin or owner is None or me.user_id is None or owner == me.user_id

    def _check_reader(self, view: SessionView) -> None:
        if not self._may_see(view.user_id):
            raise PermissionDenied(
                ErrorCode.PERMISSION_DENIED,
                f"permission denied: user {self.owner.user_id!r} does not own session "
                f"{view.workflow_id}",
            )

    async def describe(self, resource_type: str) -> dict[str, Any] | None:
        view = await self.workflows.find(self._workflow_id(resource_type))
        if view is None:
            return None
        self._check_reader(view)
        return view.model_dump(mode="json")

    async def events(self, resource_type: str, query: dict[str, Any]) -> dict[str, Any]:
        events = EventsQuery(**query)
        workflow_id = self._workflow_id(resource_type)
        if self.owner.user_id is not None and not self.owner.admin:
            view = await self.workflows.find(workflow_id)
            if view is not None:
                self._check_reader(view)
        page = await self.workflows.events(workflow_id, events)
        return page.model_dump(mode="json")

    # --- calls -------------------------------------------------------------------------------

    async def execute(
        self,
        action: str,
        params: dict[str, Any],
        timeout: float | None,
        *,
        request_id: str,
        session_id: str | None,
        trace_id: str | None,
        stream: bool = False,
        strict_params: bool = False,
        auto_resume: bool | None = None,
    ) -> dict[str, Any]:
        return await self.calls.call(
            action,
            params,
            timeout,
            request_id=request_id,
            session_id=session_id,
            trace_id=trace_id,
            stream=stream,
            strict_params=strict_params,
            auto_resume=auto_resume,
        )

    async def stream_target(self, action: str) -> str | None:
        return await self.calls.stream_target(action)

    async def execute_batch(
        self, items: list[dict[str, Any]], parallel: bool, stop_on_error: bool, trace_id: str
    ) -> dict[str, Any]:
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
        request_id = item.get("request_id") or uuid.uuid4().hex
        problem = call_problem(action, params)
        if problem is not None:
            return refused(action, problem, request_id, None, trace_id)
        return await self.execute(
            action,
            dict(params or {}),
            item.get("timeout"),
            request_id=request_id,
            session_id=None,
            trace_id=trace_id,
            strict_params=item.get("strict_params", self.owner.strict_params) is True,
        )

    # --- warmup and tools --------------------------------------------------------------------

    async def warmup(self, names: list[str] | None) -> dict[str, Any]:
        workflow_id = f"{self.owner.sandbox_id}:warmup:{uuid.uuid4().hex[:8]}"
        try:
            result = await self.workflows.warmup(names, workflow_id=workflow_id)
        except Exception as exc:
            code, message = code_of(exc)
            return warmup_failed(code, message, names, await self.warmup_status())
        self.calls.shared.update(t.resource_type for t in result.tools if t.shared)
        self.warmed.update(result.warmed)
        self.catalog.update(result.tools)
        summary = await self.warmup_status()
        return warmup_answer(result.warmed, result.worker, result.tools, summary)

    async def warmup_status(self) -> dict[str, Any]:
        try:
            backends = {s.resource_type for s in await self.catalog.specs()}
        except Exception:
            backends = set()
        return warmup_status(backends | self.warmed, self.warmed)

    async def tools(self, include_hidden: bool) -> list[dict[str, Any]]:
        specs = await self.catalog.specs()
        # An mcp session's servers' tools are the session's own, not the workers' catalog.
        specs += await session_tools(self.describe, self._list_call, [s.name for s in specs])
        return [tool_info(s) for s in specs if visible(s, include_hidden)]

    async def _list_call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.execute(
            action, params, None, request_id=uuid.uuid4().hex, session_id=None, trace_id=None
        )

    async def tool_schema(self, tool_name: str) -> dict[str, Any] | None:
        resolved = await self.catalog.resolve(tool_name)
        spec = await self.catalog.spec(resolved.tool) if resolved.tool else None
        return tool_info(spec) if spec else None

    async def status(self) -> dict[str, Any]:
        started = time.perf_counter()
        sessions = await self.list_sessions()
        try:
            tools = len(await self.catalog.specs())
        except Exception:
            tools = 0
        return status_answer(self.owner.sandbox_id, sessions, tools, started)

    async def _load_tools(self) -> list[ToolSpec]:
        """Every tool a worker offers: a warmup that warms nothing."""
        return await self.workflows.tools(f"{self.owner.sandbox_id}:tools")
