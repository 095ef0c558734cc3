"""Watchers of a session's live output never block it: a bounded number wait, each poll answers
within a bounded time, and a refused watch says why."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from client import Sandbox
from client.errors import QuotaExceeded, SessionError
from workflows.output_stream import MAX_WAITING_POLLS


async def _watch(sandbox: Sandbox, from_offset: object = 0) -> None:
    async for _ in sandbox.watch("bash", from_offset):  # type: ignore[arg-type]
        pass


async def test_cancelled_watchers_leave_calls_and_destroy_free(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    watchers = [asyncio.create_task(_watch(sandbox)) for _ in range(10)]
    await asyncio.sleep(3)
    for w in watchers:
        w.cancel()
    for w in watchers:
        with contextlib.suppress(asyncio.CancelledError, SessionError):
            await w
    started = time.monotonic()
    answer = await asyncio.wait_for(
        sandbox.execute("bash:run", {"command": "echo free"}), timeout=20
    )
    assert answer["code"] == 0 and answer["data"]["stdout"] == "free\n", answer
    view = await asyncio.wait_for(sandbox.destroy_session("bash"), timeout=20)
    took = time.monotonic() - started
    assert view["status"] == "success", view
    assert took < 10, f"a call and a destroy behind cancelled watchers took {took:.1f} s"


async def test_a_watcher_past_the_limit_is_refused_clearly(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    waiting = [asyncio.create_task(_watch(sandbox)) for _ in range(MAX_WAITING_POLLS)]
    await asyncio.sleep(2)  # all of them are waiting
    with pytest.raises(QuotaExceeded, match="readers of its output waiting already"):
        await asyncio.wait_for(_watch(sandbox), timeout=20)
    for w in waiting:
        w.cancel()
    answer = await sandbox.execute("bash:run", {"command": "echo still-serving"})
    assert answer["code"] == 0
    await sandbox.destroy_session("bash")


async def test_a_watch_from_a_bad_offset_is_refused_clearly(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    with pytest.raises(SessionError, match="past the end of the session's output") as past:
        await asyncio.wait_for(_watch(sandbox, 10**9), timeout=20)
    assert past.value.code == 4000
    with pytest.raises(SessionError, match="whole number") as bad:
        await _watch(sandbox, "x")
    assert bad.value.code == 4000
    answer = await sandbox.execute("bash:run", {"command": "echo fine"})
    assert answer["code"] == 0
    await sandbox.destroy_session("bash")
