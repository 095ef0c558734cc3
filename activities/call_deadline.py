"""A tool call's deadline on the worker: past it the call is cancelled, with its processes.

Every call carries a bound, its ``timeout`` parameter (``contract.limits.tool_timeout``: 300 s
when it sets none). A tool that declares ``timeout`` (``bash:run``, ``code:execute``) keeps it
and stops itself; the worker only cancels it if it has not answered ``OVERRUN_GRACE`` seconds
later. A tool that does not declare it (a plugin tool, as AgentFlow's) never sees it: the worker
cancels the tool's task at the bound and kills the processes the call started (those made with
``subprocess.Popen``, which ``asyncio.create_subprocess_*`` and ``subprocess.run`` use, and their
descendants), then answers 5006 with ``data.cancelled``. The call's task ends there, so the next
call on the instance (the ledger runs them one at a time) starts at once instead of waiting for
it, as on AgentFlow, which cancels a call at its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from contract import ErrorCode, ToolOutcome
from contract.limits import tool_timeout

#: How long past its own ``timeout`` a tool that declares one may take before it is cancelled.
OVERRUN_GRACE = 15.0

#: The processes the running call started (None outside a call).
_started: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "call_processes", default=None
)
_install_lock = threading.Lock()
_installed = False


def call_bound(params: dict[str, Any], declares_timeout: bool) -> tuple[dict[str, Any], float]:
    """The parameters the tool gets and the seconds after which its call is cancelled."""
    bound = tool_timeout(params)
    if declares_timeout:
        return params, bound + OVERRUN_GRACE
    return {k: v for k, v in params.items() if k != "timeout"}, bound


async def run_with_deadline(
    call: Callable[[], Awaitable[ToolOutcome]], seconds: float, tool: str
) -> ToolOutcome:
    """``call()``'s outcome, or 5006 after cancelling it (and killing its processes) at
    ``seconds``."""
    track_processes()
    began = time.perf_counter()
    started: list[int] = []
    token = _started.set(started)
    try:
        # The task inherits this context (and so the list): its Popen calls land in it.
        task = asyncio.ensure_future(call())
    finally:
        _started.reset(token)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if done:
            return task.result()
        task.cancel()
        # A tool that swallows the cancellation is waited for no longer than a moment.
        await asyncio.wait({task}, timeout=1.0)
    except asyncio.CancelledError:  # the activity itself was cancelled: so is its call
        task.cancel()
        raise
    finally:
        killed = kill_trees(started)
    return ToolOutcome(
        code=ErrorCode.TIMEOUT,
        message=(
            f"{tool} ran past its timeout of {seconds:g} s and was cancelled"
            + (f" ({killed} process(es) it started were killed)" if killed else "")
        ),
        data={"cancelled": True, "timeout": seconds, "killed_processes": killed},
        execution_time_ms=round((time.perf_counter() - began) * 1000, 3),
    )


def track_processes() -> None:
    """Note every process made by ``subprocess.Popen`` within a call (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        original = subprocess.Popen.__init__

        def init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            started = _started.get()
            if started is not None:
                started.append(self.pid)

        subprocess.Popen.__init__ = init  # type: ignore[method-assign]
        _installed = True


def kill_trees(pids: list[int]) -> int:
    """SIGKILL each process that is still running and its descendants (and its process group
    when it leads one); answers how many processes were signalled."""
    if not pids:
        return 0
    children = _children()
    victims: list[int] = []
    for pid in pids:
        stack = [pid]
        while stack:
            current = stack.pop()
            if current not in victims:
                victims.append(current)
                stack.extend(children.get(current, []))
    killed = 0
    for pid in victims:
        with contextlib.suppress(OSError):
            if pid in pids and os.getpgid(pid) == pid and pid != os.getpgrp():
                os.killpg(pid, signal.SIGKILL)
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children
