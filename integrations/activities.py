"""Session activities for a user's own worker: ``execute``, ``create_session``,
``destroy_session`` and ``list_tools``.

    activities = SessionToolActivities()          # connects to the sessions' Temporal lazily
    Worker(agent_client, task_queue="agents", workflows=[MyAgent],
           activities=activities.all())

Each ``execute`` sends its call with a request id derived from the calling workflow's id, run id
and activity id. The session answers a request id once (it is the update id, and the session
remembers answers across continue-as-new), so when an attempt fails after the tool ran (the
worker died, the answer was lost) the retry gets the same answer and the tool does not run again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from temporalio import activity
from temporalio.client import Client

from contract import DEFAULT_TASK_QUEUE, Envelope, ToolSpec
from integrations.calls import (
    CREATE_SESSION,
    DESTROY_SESSION,
    EXECUTE,
    LIST_TOOLS,
    ListToolsRequest,
    SessionRequest,
    ToolCall,
)
from integrations.gateway import SessionGateway

#: Called after a tool answered and before the activity completes (tests fail an attempt here).
AfterCall = Callable[[ToolCall, Envelope], Awaitable[None]]

_MAX_REQUEST_ID = 200


def request_id_for_activity(info: activity.Info | None = None) -> str:
    """The request id of the running activity attempt: the same for every attempt of one
    activity of one workflow run, different for every other activity.

    ``<workflow id>/<run id>/<activity id>``, or a hash of it when that is longer than a request
    id may be. A standalone activity (no workflow) uses its own activity id and run id.
    """
    info = info or activity.info()
    if info.workflow_id:
        raw = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
    else:
        raw = f"activity/{info.activity_id}/{info.activity_run_id or ''}"
    if len(raw) <= _MAX_REQUEST_ID:
        return raw
    return "act-" + hashlib.sha256(raw.encode()).hexdigest()


@asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while a call waits on its session, when the caller set a heartbeat timeout: a
    dead worker's attempt is then retried soon instead of at its start-to-close timeout."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(max(timeout.total_seconds() / 4, 0.1))

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class SessionToolActivities:
    """The session activities, bound to one sessions deployment.

    Args:
        client: A Temporal client for the sessions (connected with
            ``runtime.connection.connect``, so payloads match the session workflows'); default:
            one connected on first use from ``address`` and ``namespace``.
        address, namespace: Where the sessions run; default ``$TEMPORAL_ADDRESS`` /
            ``$TEMPORAL_NAMESPACE`` (see the Configuration section of the README).
        task_queue: The session workers' task queue.
        after_call: A hook run after each tool call, before the activity completes.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        address: str | None = None,
        namespace: str | None = None,
        task_queue: str = DEFAULT_TASK_QUEUE,
        after_call: AfterCall | None = None,
    ) -> None:
        self.gateway = SessionGateway(
            client, address=address, namespace=namespace, task_queue=task_queue
        )
        self.after_call = after_call

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for ``Worker(activities=...)``."""
        return [self.execute, self.create_session, self.destroy_session, self.list_tools]

    @activity.defn(name=EXECUTE)
    async def execute(self, call: ToolCall) -> Envelope:
        """Run one tool call on the sandbox's session (opened when it is not live); the answer
        is always an envelope."""
        request_id = call.request_id or request_id_for_activity()
        async with _heartbeating():
            return await self.gateway.execute(call, request_id, after=self.after_call)

    @activity.defn(name=LIST_TOOLS)
    async def list_tools(self, req: ListToolsRequest) -> list[ToolSpec]:
        """The tools (with their JSON schemas) of the named backends, or of all of them."""
        return await self.gateway.tools(req.resource_types, refresh=True)

    @activity.defn(name=CREATE_SESSION)
    async def create_session(self, req: SessionRequest) -> dict[str, Any]:
        """Open the sandbox's session of one resource type; an open one answers "exists"."""
        return await self.gateway.create_session(req)

    @activity.defn(name=DESTROY_SESSION)
    async def destroy_session(self, req: SessionRequest) -> dict[str, Any]:
        """Destroy the sandbox's session of one resource type (idempotent)."""
        return await self.gateway.destroy_session(req)
