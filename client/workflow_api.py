"""The one typed gateway from the client side to the session workflows.

Every start, update, query and visibility query of ``SessionWorkflow`` (and of the shared-tools
and warmup workflows the client starts) is made here and answers a contract type
(``SessionView``, ``Envelope``, ``EventsPage``...). Nothing outside ``workflows/`` and this module
names a workflow's handler, so a renamed or retyped handler changes one place.

Updates go through :func:`client.transport.send` (one mapping of failures to ``SessionError``,
and the no-worker watch); queries raise what the server raised, for the caller to name.
Visibility queries are built by :class:`SessionQuery` from the search attributes the sessions
set, temporary sessions found by ``SessionKind``, never by their workflow id.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from client.transport import (
    CALL_SLACK,
    QUERY_TIMEOUT,
    call_timeout,
    checked_id,
    send,
    start_search_attributes,
    tracked,
)
from contract import (
    DEFAULT_TASK_QUEUE,
    AgentIdAttr,
    AppendRequest,
    BatchRequest,
    Checkpoint,
    CheckpointRequest,
    DestroyRequest,
    Envelope,
    EventsPage,
    EventsQuery,
    ExecuteRequest,
    ForkRequest,
    ForkSource,
    MetadataRequest,
    OpenRequest,
    RefreshRequest,
    ReinitializeRequest,
    ReinitializeResult,
    RenameRequest,
    ResourceTypeAttr,
    SandboxIdAttr,
    SaveCheckpointRequest,
    SessionEvent,
    SessionInput,
    SessionKindAttr,
    SessionStateAttr,
    SessionSummary,
    SessionView,
    SetStateRequest,
    SharedToolsInput,
    ToolSpec,
    UserIdAttr,
    WarmupInput,
    WarmupResult,
    shared_tools_workflow_id,
)
from workflows import SessionWorkflow, SharedToolsWorkflow, WarmupWorkflow

T = TypeVar("T")
SessionHandle = WorkflowHandle[SessionWorkflow, SessionSummary]
#: The ``SessionKind`` of a one-call temporary session (``start_search_attributes``).
TEMPORARY = "temporary"
#: How long a tool list answers before a new one is asked for.
TOOLS_TIMEOUT = timedelta(seconds=30)
WARMUP_TIMEOUT = timedelta(minutes=15)


@dataclass(frozen=True)
class SessionQuery:
    """A visibility query over session workflows, from their search attributes.

    Every value is an id (``checked_id``: ValueError otherwise), so no quoting tricks pass.
    ``running``: True live sessions only, False closed ones only, None both. ``owned``: only
    sessions with an owner (when no ``user_id`` names one). ``temporary``: include one-call
    temporary sessions (``SessionKind``). ``extra``: a condition of the caller's own, ANDed.
    """

    running: bool | None = True
    sandbox_id: str | None = None
    user_id: str | None = None
    owned: bool = False
    agent_id: str | None = None
    resource_type: str | None = None
    states: tuple[str, ...] = ()
    temporary: bool = True
    extra: str | None = None

    def __post_init__(self) -> None:
        self.text()  # a bad value is refused here, where the query is made

    def text(self) -> str:
        parts = ["WorkflowType = 'SessionWorkflow'"]
        if self.running is not None:
            parts.append(f"ExecutionStatus {'=' if self.running else '!='} 'Running'")
        if self.user_id is not None:
            parts.append(f"{UserIdAttr.name} = {_quoted(self.user_id, 'user_id')}")
        elif self.owned:
            parts.append(f"{UserIdAttr.name} IS NOT NULL")
        for attr, value, what in (
            (AgentIdAttr, self.agent_id, "agent_id"),
            (ResourceTypeAttr, self.resource_type, "resource_type"),
            (SandboxIdAttr, self.sandbox_id, "sandbox_id"),
        ):
            if value is not None:
                parts.append(f"{attr.name} = {_quoted(value, what)}")
        if self.states:
            states = ", ".join(_quoted(s, "state") for s in self.states)
            parts.append(f"{SessionStateAttr.name} IN ({states})")
        if not self.temporary:
            parts.append(f"{SessionKindAttr.name} != '{TEMPORARY}'")
        if self.extra:
            parts.append(self.extra)
        return " AND ".join(parts)

    def __str__(self) -> str:
        return self.text()


def _quoted(value: str, what: str) -> str:
    return f"'{checked_id(value, what)}'"


def session_kind(execution: WorkflowExecution) -> str | None:
    """A listed session's ``SessionKind``: session, temporary or record."""
    return execution.typed_search_attributes.get(SessionKindAttr)


class SessionWorkflows:
    """The session workflows of one Temporal client and task queue, typed."""

    def __init__(self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        self.client = client
        self.task_queue = task_queue

    def handle(self, workflow_id: str) -> SessionHandle:
        return self.client.get_workflow_handle_for(SessionWorkflow.run, workflow_id)

    async def _send(self, call: Callable[[], Awaitable[T]]) -> T:
        return await send(call, client=self.client, task_queue=self.task_queue)

    # --- starts ------------------------------------------------------------------------------

    def start_operation(
        self,
        inp: SessionInput,
        workflow_id: str,
        *,
        summary: str,
        reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    ) -> WithStartWorkflowOperation[SessionWorkflow, SessionSummary]:
        """Start a session workflow with the search attributes the UI and listings filter on.
        An operation serves one call only: build a fresh one for every attempt."""
        operation = WithStartWorkflowOperation(
            SessionWorkflow.run,
            inp,
            id=workflow_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=reuse,
            search_attributes=start_search_attributes(inp),
            static_summary=summary,
            # A fork's lineage in the UI's memo too (the search attribute is for queries).
            memo={"parent_session": inp.parent_session} if inp.parent_session else None,
        )
        return tracked(operation)

    async def open(
        self, inp: SessionInput, req: OpenRequest, *, workflow_id: str, summary: str
    ) -> SessionView:
        """Open (start, or find live) the session ``workflow_id``."""
        return await self._send(
            lambda: self.client.execute_update_with_start_workflow(
                SessionWorkflow.open,
                req,
                start_workflow_operation=self.start_operation(inp, workflow_id, summary=summary),
                rpc_timeout=CALL_SLACK * 3,
            )
        )

    async def execute_temporary(
        self, inp: SessionInput, req: ExecuteRequest, *, workflow_id: str, summary: str
    ) -> Envelope:
        """Run one call in a new temporary session. REJECT_DUPLICATE: a retry after it ended
        must not run the tool again (WorkflowAlreadyStartedError: read its ``summary``)."""
        return await self._send(
            lambda: self.client.execute_update_with_start_workflow(
                SessionWorkflow.execute,
                req,
                start_workflow_operation=self.start_operation(
                    inp, workflow_id, summary=summary, reuse=WorkflowIDReusePolicy.REJECT_DUPLICATE
                ),
                id=req.request_id,
                rpc_timeout=call_timeout(req.params),
            )
        )

    async def execute_shared(self, sandbox_id: str, req: ExecuteRequest) -> Envelope:
        """Run a shared tool's call on the sandbox's shared-tools workflow (started on need)."""
        return await self._send(
            lambda: self.client.execute_update_with_start_workflow(
                SharedToolsWorkflow.execute,
                req,
                start_workflow_operation=self._shared_operation(sandbox_id),
                id=req.request_id,
                rpc_timeout=call_timeout(req.params),
            )
        )

    def _shared_operation(self, sandbox_id: str) -> WithStartWorkflowOperation[Any, Any]:
        # A fresh operation per attempt: one cannot be reused.
        operation = WithStartWorkflowOperation(
            SharedToolsWorkflow.run,
            SharedToolsInput(sandbox_id=sandbox_id),
            id=shared_tools_workflow_id(sandbox_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SandboxIdAttr, sandbox_id),
                    SearchAttributePair(ResourceTypeAttr, "shared"),
                ]
            ),
            static_summary=f"shared tools of sandbox {sandbox_id}",
        )
        return tracked(operation)

    async def warmup(
        self,
        resource_types: list[str] | None,
        *,
        workflow_id: str,
        timeout: timedelta = WARMUP_TIMEOUT,
    ) -> WarmupResult:
        """Warm backends on a worker (all when None; none when empty: the tool list only)."""
        return await self.client.execute_workflow(
            WarmupWorkflow.run,
            WarmupInput(resource_types=resource_types),
            id=workflow_id,
            task_queue=self.task_queue,
            execution_timeout=timeout,
        )

    async def tools(self, prefix: str) -> list[ToolSpec]:
        """Every tool a worker offers: a warmup that warms nothing (``<prefix>:<random>``)."""
        result = await self.warmup(
            [], workflow_id=f"{prefix}:{uuid.uuid4().hex[:8]}", timeout=TOOLS_TIMEOUT
        )
        return list(result.tools)

    # --- updates -----------------------------------------------------------------------------

    async def execute(self, workflow_id: str, req: ExecuteRequest) -> Envelope:
        """One call; the request id is the update id, so a retried call runs once."""
        handle = self.handle(workflow_id)
        rpc_timeout = call_timeout(req.params)
        return await self._send(
            lambda: handle.execute_update(
                SessionWorkflow.execute, req, id=req.request_id, rpc_timeout=rpc_timeout
            )
        )

    async def execute_batch(self, workflow_id: str, req: BatchRequest) -> list[Envelope]:
        handle = self.handle(workflow_id)
        # The calls run one after another: the batch may take their bounds together.
        bound = sum((call_timeout(c.params) for c in req.calls), timedelta())
        return await self._send(
            lambda: handle.execute_update(SessionWorkflow.execute_batch, req, rpc_timeout=bound)
        )

    async def refresh(self, workflow_id: str, req: RefreshRequest) -> SessionView:
        handle = self.handle(workflow_id)
        return await self._send(
            lambda: handle.execute_update(SessionWorkflow.refresh, req, rpc_timeout=CALL_SLACK)
        )

    async def reinitialize(self, workflow_id: str, req: ReinitializeRequest) -> ReinitializeResult:
        handle = self.handle(workflow_id)
        return await self._send(
            lambda: handle.execute_update(
                SessionWorkflow.reinitialize, req, id=req.request_id, rpc_timeout=CALL_SLACK * 3
            )
        )

    async def destroy(self, workflow_id: str, req: DestroyRequest) -> SessionView:
        handle = self.handle(workflow_id)
        return await self._send(
            lambda: handle.execute_update(SessionWorkflow.destroy, req, rpc_timeout=CALL_SLACK * 2)
        )

    async def fork(self, workflow_id: str, req: ForkRequest) -> ForkSource:
        """What the children ``req`` names start from (a fresh snapshot of the session's
        instance may take a while: the bound is a call's)."""
        handle = self.handle(workflow_id)
        return await self._send(
            lambda: handle.execute_update(
                SessionWorkflow.fork, req, id=req.request_id or None, rpc_timeout=CALL_SLACK * 5
            )
        )

    async def rename(self, workflow_id: str, req: RenameRequest) -> SessionView:
        return await self._update(workflow_id, SessionWorkflow.rename, req)

    async def set_state(self, workflow_id: str, req: SetStateRequest) -> SessionView:
        return await self._update(workflow_id, SessionWorkflow.set_state, req)

    async def update_metadata(self, workflow_id: str, req: MetadataRequest) -> SessionView:
        return await self._update(workflow_id, SessionWorkflow.update_metadata, req)

    async def save_checkpoint(self, workflow_id: str, req: SaveCheckpointRequest) -> Checkpoint:
        return await self._update(workflow_id, SessionWorkflow.save_checkpoint, req)

    async def delete_checkpoints(self, workflow_id: str, req: CheckpointRequest) -> int:
        return await self._update(workflow_id, SessionWorkflow.delete_checkpoints, req)

    async def append(self, workflow_id: str, req: AppendRequest) -> SessionEvent:
        return await self._update(workflow_id, SessionWorkflow.append, req)

    async def _update(self, workflow_id: str, update: Any, req: Any) -> Any:
        handle = self.handle(workflow_id)
        return await self._send(lambda: handle.execute_update(update, req, rpc_timeout=CALL_SLACK))

    # --- queries and results -----------------------------------------------------------------

    async def describe(
        self, workflow_id: str, *, rpc_timeout: timedelta = QUERY_TIMEOUT
    ) -> SessionView:
        """The session's view (raises RPCError: gone, or no worker answered in time)."""
        return await self.handle(workflow_id).query(
            SessionWorkflow.describe, rpc_timeout=rpc_timeout
        )

    async def find(self, workflow_id: str) -> SessionView | None:
        """The session's view, or None when it cannot answer (closed meanwhile, never
        existed, no worker)."""
        try:
            return await self.describe(workflow_id)
        except Exception:
            return None

    async def events(self, workflow_id: str, query: EventsQuery) -> EventsPage:
        return await self.handle(workflow_id).query(
            SessionWorkflow.events, query, rpc_timeout=QUERY_TIMEOUT
        )

    async def checkpoints(self, workflow_id: str) -> list[Checkpoint]:
        return await self.handle(workflow_id).query(
            SessionWorkflow.checkpoints, rpc_timeout=QUERY_TIMEOUT
        )

    async def summary(
        self, workflow_id: str, *, rpc_timeout: timedelta | None = None
    ) -> SessionSummary:
        """How the session ended (waits for its end)."""
        return await self.handle(workflow_id).result(rpc_timeout=rpc_timeout)

    async def execution(self, workflow_id: str) -> WorkflowExecutionDescription:
        """What the server knows of the workflow run (status, close time)."""
        return await self.handle(workflow_id).describe(rpc_timeout=QUERY_TIMEOUT)

    # --- visibility --------------------------------------------------------------------------

    def list(self, query: SessionQuery | str) -> AsyncIterator[WorkflowExecution]:
        """Matching session workflows, as the server lists them (newest first)."""
        return self.client.list_workflows(str(query))

    async def count(self, query: SessionQuery | str) -> int:
        return (await self.client.count_workflows(str(query))).count

    async def ids(self, query: SessionQuery | str) -> set[str]:
        return {e.id async for e in self.list(query)}

    async def delete(self, workflow_id: str) -> None:
        """Delete the workflow and its history (the server removes it asynchronously)."""
        await self.client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=self.client.namespace,
                workflow_execution=ExecutionRef(workflow_id=workflow_id),
            )
        )
