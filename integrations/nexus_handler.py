"""The handler of the sessions' Nexus service (``integrations.nexus_service``), registered on the
session workers' shared task queue."""

from __future__ import annotations

from typing import Any

import nexusrpc
from nexusrpc.handler import StartOperationContext, service_handler, sync_operation
from temporalio import nexus

from contract import DEFAULT_TASK_QUEUE, Envelope
from integrations.calls import SessionRequest, ToolCall
from integrations.gateway import SessionGateway
from integrations.nexus_service import SessionsService


@service_handler(service=SessionsService)
class SessionsNexusHandler:
    """Runs each operation on the session workflows with the worker's own client."""

    def __init__(self, task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        self.gateway = SessionGateway(nexus.client, task_queue=task_queue)

    @sync_operation
    async def create(self, ctx: StartOperationContext, req: SessionRequest) -> dict[str, Any]:
        view = await self.gateway.create_session(req)
        if view.get("status") == "error":
            raise nexusrpc.OperationError(
                f"{req.resource_type} session of {req.sandbox_id} could not be opened: "
                f"{view.get('message', '')}",
                state=nexusrpc.OperationErrorState.FAILED,
            )
        return view

    @sync_operation
    async def execute(self, ctx: StartOperationContext, call: ToolCall) -> Envelope:
        # The Nexus request id is the same for every retry of one operation: answered once.
        return await self.gateway.execute(call, call.request_id or f"nexus-{ctx.request_id}")

    @sync_operation
    async def destroy(self, ctx: StartOperationContext, req: SessionRequest) -> dict[str, Any]:
        return await self.gateway.destroy_session(req)
