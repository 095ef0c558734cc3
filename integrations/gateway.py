"""One way to reach sessions for every integration: the session activities, the Nexus service and
the MCP server all run their calls through a ``SessionGateway``.

A call names its sandbox and tool; the gateway opens the sandbox's session of that tool's backend
when it is not live (a shared backend, such as rag, needs none) and runs the call with the
caller's request id, which the session answers once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError

from client import Sandbox
from client.errors import code_of
from client.workflow_api import SessionWorkflows
from contract import (
    DEFAULT_TASK_QUEUE,
    Envelope,
    EnvelopeMeta,
    ErrorCode,
    ToolSpec,
    split_tool_name,
)
from integrations.calls import SessionRequest, ToolCall
from runtime.connection import connect


class SessionGateway:
    """Calls on sandboxes' sessions, with the tools' specs learnt once.

    Args:
        client: The sessions' Temporal client, or a function answering it (``nexus.client``);
            default: one connected on first use from ``address`` and ``namespace``.
        task_queue: The session workers' task queue.
    """

    def __init__(
        self,
        client: Client | Callable[[], Client] | None = None,
        *,
        address: str | None = None,
        namespace: str | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
    ) -> None:
        self._client = client
        self._address = address
        self._namespace = namespace
        self.task_queue = task_queue
        self._specs: list[ToolSpec] | None = None

    async def client(self) -> Client:
        if callable(self._client) and not isinstance(self._client, Client):
            return self._client()
        if self._client is None:
            self._client = await connect(self._address, self._namespace)
        return self._client

    async def sandbox(
        self, sandbox_id: str, user_id: str | None = None, session_ttl: float | None = None
    ) -> Sandbox:
        return Sandbox(
            sandbox_id,
            client=await self.client(),
            task_queue=self.task_queue,
            session_ttl=session_ttl,
            user_id=user_id,
            destroy_on_exit=False,
        )

    async def tools(
        self, resource_types: list[str] | None = None, *, refresh: bool = False
    ) -> list[ToolSpec]:
        """The specs (JSON schemas included) of the named backends' tools, or of all."""
        if self._specs is None or refresh:
            # A warmup of nothing: it lists every tool the session workers offer.
            workflows = SessionWorkflows(await self.client(), self.task_queue)
            try:
                self._specs = await workflows.tools("integrations:tools")
            except Exception as exc:
                _, message = code_of(exc)
                raise RuntimeError(f"cannot list the sessions' tools: {message}") from exc
        wanted = set(resource_types) if resource_types is not None else None
        return [s for s in self._specs if wanted is None or s.resource_type in wanted]

    async def execute(
        self,
        call: ToolCall,
        request_id: str,
        *,
        after: Callable[[ToolCall, Envelope], Awaitable[None]] | None = None,
    ) -> Envelope:
        """Run one call with ``request_id`` (its session answers it once); always an envelope."""
        sandbox = await self.sandbox(call.sandbox_id, call.user_id, call.session_ttl)
        refused = await self._open_for(sandbox, call, request_id)
        if refused is not None:
            return refused
        answer = await sandbox.execute(
            call.tool, call.params, request_id=request_id, session_id=call.session_id
        )
        envelope = Envelope.model_validate(answer)
        if after is not None:
            await after(call, envelope)
        return envelope

    async def _open_for(self, sandbox: Sandbox, call: ToolCall, request_id: str) -> Envelope | None:
        """Open the call's session unless its backend is shared or the caller said not to; an
        error envelope when the session cannot be opened."""
        if not call.open_session or call.session_id is not None:
            return None
        try:
            resource_type, _ = split_tool_name(call.tool)
        except ValueError:
            return None  # the call answers 4002 itself
        if resource_type in {s.resource_type for s in await self.tools() if s.shared}:
            return None
        meta = EnvelopeMeta(tool=call.tool, resource_type=resource_type, request_id=request_id)
        try:
            view = await sandbox.create_session(resource_type, call.config)
        except WorkflowUpdateFailedError as exc:  # refused: another user's session, bad config
            code, message = code_of(exc)
            return Envelope(code=code, message=message, meta=meta)
        if view.get("status") != "error":
            return None
        message = view.get("message") or f"the {resource_type} session could not be opened"
        code = int(view.get("code", ErrorCode.INITIALIZE_FAILED))
        return Envelope(code=code, message=message, meta=meta)

    async def create_session(self, req: SessionRequest) -> dict[str, Any]:
        """Open a sandbox's session of one resource type; an open one answers "exists"."""
        sandbox = await self.sandbox(req.sandbox_id, req.user_id, req.session_ttl)
        return await sandbox.create_session(req.resource_type, req.config)

    async def destroy_session(self, req: SessionRequest) -> dict[str, Any]:
        """Destroy a sandbox's session of one resource type (idempotent)."""
        sandbox = await self.sandbox(req.sandbox_id, req.user_id, req.session_ttl)
        return await sandbox.destroy_session(req.resource_type)
