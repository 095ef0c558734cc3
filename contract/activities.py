"""Activity signatures: the names and types workflows call, implemented in ``activities/``.

Workflows import these stubs, never the implementations, so loading a workflow (or the client)
loads no worker or backend code. The worker registers ``activities.SessionActivities``, whose
methods carry the same names.
"""

from __future__ import annotations

from temporalio import activity

from contract.activity_io import (
    CleanupInput,
    InitializeInput,
    ToolCallInput,
    WarmupInput,
    WarmupResult,
)
from contract.models import InstanceInfo, ToolOutcome

WARMUP = "session.warmup"
INITIALIZE = "session.initialize"
CALL_TOOL = "session.call_tool"
CLEANUP = "session.cleanup"
ALIVE = "session.alive"
SNAPSHOT = "session.snapshot"


def liveness_queue(pinned_queue: str) -> str:
    """Where a worker answers ``alive``: a queue of its own, so a busy worker still answers."""
    return f"{pinned_queue}/alive"


@activity.defn(name=WARMUP)
async def warmup(inp: WarmupInput) -> WarmupResult:
    """Warm backends on the worker that takes it; answers its tool catalog."""
    raise NotImplementedError


@activity.defn(name=INITIALIZE)
async def initialize(inp: InitializeInput) -> InstanceInfo:
    """Create an instance; the worker that does keeps it and answers its own task queue."""
    raise NotImplementedError


@activity.defn(name=CALL_TOOL)
async def call_tool(inp: ToolCallInput) -> ToolOutcome:
    """Run one tool call on a held instance (or a shared tool, or a one-shot instance)."""
    raise NotImplementedError


@activity.defn(name=CLEANUP)
async def cleanup(inp: CleanupInput) -> None:
    """Release an instance on the worker that holds it."""
    raise NotImplementedError


@activity.defn(name=ALIVE)
async def alive() -> str:
    """Answer the worker's id at once: its process is up and its event loop is free."""
    raise NotImplementedError


@activity.defn(name=SNAPSHOT)
async def snapshot(inp: CleanupInput) -> ToolOutcome:
    """The held instance's state now (``ToolOutcome.snapshot``; None when unchanged since the
    last one), taken before a fork or an idle suspend; 5014 when this worker does not hold it."""
    raise NotImplementedError
