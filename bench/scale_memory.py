"""Live sessions per GB: the memory of the worker's whole process tree (the worker, its jails, the
shells and interpreters in them) with N live sessions, beside N bare floor workflows held open.

Each session runs one call, so its instance is really live (a shell that ran a command, an
interpreter that ran code). The marginal cost of a session is (tree with N - tree with none) / N,
the tree measured in PSS (shared pages split among the processes that share them); a GB then holds
1024 MB / that many sessions, past the worker's own base, which is printed beside it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client

from bench.floor import FloorWorkflow, new_floor
from bench.procs import created, tree_memory
from client import Sandbox

FIRST_CALL = {
    "bash": ("bash:run", {"command": "echo hi"}),
    "code": ("code:execute", {"code": "x = 1"}),
}
#: Creations at once while filling the worker.
AT_ONCE = 20


def suspend_supported() -> bool:
    """Whether the client takes ``idle_suspend_seconds`` (the fork/suspend work, issue 27)."""
    return "idle_suspend_seconds" in inspect.signature(Sandbox.create_session).parameters


async def _gated(n: int, make: Callable[[], Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(AT_ONCE)

    async def one() -> Any:
        async with gate:
            return await make()

    return list(await asyncio.gather(*(one() for _ in range(n))))


def _row(before: Any, after: Any, n: int, **extra: Any) -> dict[str, Any]:
    per_mb = (after.pss_mb - before.pss_mb) / n
    return {
        "sessions": n,
        "tree_pss_before_mb": before.pss_mb,
        "tree_pss_after_mb": after.pss_mb,
        "tree_rss_after_mb": after.rss_mb,
        "processes_before": before.processes,
        "processes_after": after.processes,
        "per_session_kb": round(per_mb * 1024, 1),
        "per_gb": int(1024 / per_mb) if per_mb > 0 else None,
        **extra,
    }


async def sessions_per_gb(
    client: Client, worker_pid: int, resource_type: str, n: int, *, suspend: float | None = None
) -> dict[str, Any]:
    """N live sessions of ``resource_type`` on the worker, each after its first call; with
    ``suspend``, sessions that suspend that many seconds idle, measured once suspended."""
    tool, params = FIRST_CALL[resource_type]
    options: dict[str, Any] = {"idle_suspend_seconds": suspend} if suspend is not None else {}

    async def make() -> Sandbox:
        sb = Sandbox(f"bench-mem-{uuid.uuid4().hex[:8]}", client=client)
        await created(sb, resource_type, **options)
        answer = await sb.execute(tool, params)
        if answer["code"] != 0:
            raise RuntimeError(f"{tool}: {answer['message']}")
        return sb

    async def drop(sb: Sandbox) -> None:
        await sb.destroy_session(resource_type)

    # One round first: the backend's warm-up and the ready pool are the worker's base, not the
    # sessions'.
    for sb in await _gated(AT_ONCE, make):
        await drop(sb)
    await asyncio.sleep(2)
    before = tree_memory(worker_pid)
    started = time.perf_counter()
    boxes = await _gated(n, make)
    made_s = time.perf_counter() - started
    if suspend is not None:
        await _until_released(worker_pid, before.processes, timeout=suspend + 60)
    after = tree_memory(worker_pid)
    row = _row(before, after, n, made_in_s=round(made_s, 1))
    await _gated_drop(boxes, drop)
    return row


async def _until_released(worker_pid: int, base_processes: int, timeout: float) -> None:
    """Wait until the worker's tree is back to its process count without sessions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tree_memory(worker_pid).processes <= base_processes + 2:
            return
        await asyncio.sleep(1)


async def _gated_drop(boxes: list[Sandbox], drop: Callable[[Sandbox], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(sb: Sandbox) -> None:
        async with gate:
            await drop(sb)

    await asyncio.gather(*(one(sb) for sb in boxes))


async def floors_per_gb(client: Client, floor_pid: int, pinned: str, n: int) -> dict[str, Any]:
    """The floor: N bare workflows held open in the floor worker's cache, each after one update
    with a local activity."""

    async def make() -> Any:
        handle = await new_floor(client, pinned)
        await handle.execute_update(FloorWorkflow.with_local_activity, "x")
        return handle

    for handle in await _gated(AT_ONCE, make):
        await handle.execute_update(FloorWorkflow.finish)
    await asyncio.sleep(2)
    before = tree_memory(floor_pid)
    handles = await _gated(n, make)
    after = tree_memory(floor_pid)
    row = _row(before, after, n)
    await asyncio.gather(*(h.execute_update(FloorWorkflow.finish) for h in handles))
    return row
