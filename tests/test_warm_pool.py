"""Instances started ahead of their sessions (activities/warm_pool.py), on the real bash backend."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from activities.warm_pool import WarmPool
from backends.bash import BashBackend


def _pid(info: dict[str, Any]) -> int:
    pid = info["shell"].pid
    assert pid is not None
    return int(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _until(check: Any, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_session_of_the_default_config_starts_on_a_ready_instance() -> None:
    backend = BashBackend()
    pool = WarmPool("test")
    try:
        pool.prefill(backend)
        await _until(lambda: pool.ready("bash") == backend.warm_instances)
        ready = {_pid(i) for i in pool._ready[("bash", "{}")]}
        taken = [await pool.initialize(backend, {}) for _ in range(3)]
        pids = [_pid(i) for i in taken]
        assert len(set(pids)) == 3, "an instance was handed out twice"
        assert set(pids[:2]) == ready  # the ready ones first, oldest first
        result = await backend.run("echo $HOME; pwd", session_info=taken[0])
        assert result["stdout"] == "/workspace\n/workspace\n"
        # Each one taken is replaced in the background.
        await _until(lambda: pool.ready("bash") == backend.warm_instances)
        for info in taken:
            await backend.cleanup("test", info)
    finally:
        await pool.close()


class _HeldBash(BashBackend):
    """Bash whose starts, once done, wait for ``go``: the test picks the moment a refill ends."""

    warm_instances = 1

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        info = await super().initialize(worker_id, config)
        self.started.set()
        await self.go.wait()
        return info


async def test_an_instance_taken_as_a_refill_ends_is_replaced_too() -> None:
    backend = _HeldBash()
    pool = WarmPool("test")
    taken: list[dict[str, Any]] = []
    try:
        pool.prefill(backend)
        await asyncio.wait_for(backend.started.wait(), 20)
        backend.go.set()
        await asyncio.sleep(0)  # the refill's last step runs first, then this one, back to back
        assert pool.ready("bash") == 1
        taken.append(await pool.initialize(backend, {}))
        await _until(lambda: pool.ready("bash") == 1, timeout=10)
    finally:
        for info in taken:
            await backend.cleanup("test", info)
        await pool.close()


async def test_another_config_is_kept_ready_from_its_second_request() -> None:
    backend = BashBackend()
    pool = WarmPool("test")
    config = {"env": {"GREETING": "hi"}}
    try:
        first = await pool.initialize(backend, config)
        await asyncio.sleep(0.3)
        assert pool.ready("bash") == 0  # asked once: nothing started ahead
        second = await pool.initialize(backend, config)
        await _until(lambda: pool.ready("bash") == backend.warm_instances)
        third = await pool.initialize(backend, config)
        assert third["shell"].environment()["GREETING"] == "hi"
        for info in (first, second, third):
            await backend.cleanup("test", info)
    finally:
        await pool.close()


async def test_close_ends_every_ready_instance() -> None:
    backend = BashBackend()
    pool = WarmPool("test")
    pool.prefill(backend)
    await _until(lambda: pool.ready("bash") == backend.warm_instances)
    pids = [_pid(i) for i in pool._ready[("bash", "{}")]]
    await pool.close()
    assert pool.ready("bash") == 0
    await _until(lambda: not any(_alive(p) for p in pids))
    # Closed: nothing is started any more.
    info = await pool.initialize(backend, {})
    await asyncio.sleep(0.3)
    assert pool.ready("bash") == 0
    await backend.cleanup("test", info)


async def test_a_cleanup_beside_a_start_leaves_the_new_instance_working() -> None:
    # A cleanup used to close its output pipes twice; a start in between reused the numbers and
    # lost them ("Bad file descriptor"). Cleanups now run beside starts (temporary calls).
    backend = BashBackend()
    live = [await backend.initialize("test", {}) for _ in range(2)]
    for _ in range(6):
        old = live.pop(0)
        # The cleanup first: it frees its descriptors, then waits for its sandbox to end while
        # the start takes the lowest free numbers.
        _, new = await asyncio.gather(backend.cleanup("test", old), backend.initialize("test", {}))
        live.append(new)
    for info in live:
        assert (await backend.run("echo ok", session_info=info))["stdout"] == "ok\n"
        await backend.cleanup("test", info)


class _SlowStart(BashBackend):
    """A start that takes 0.2 s and starts nothing: the pool's sizing alone is under test."""

    name = "slowstart"
    warm_instances = 1

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.2)
        return {}

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        return None


async def test_a_config_in_demand_keeps_more_ready_up_to_the_cap(monkeypatch: Any) -> None:
    monkeypatch.setenv("SESSIONS_WARM_MAX", "2")
    backend = _SlowStart()
    pool = WarmPool("test")
    try:
        pool.prefill(backend)
        await _until(lambda: pool.ready("slowstart") == 1)
        assert pool.target(backend, ("slowstart", "{}")) == 1  # nothing taken yet
        for _ in range(30):  # 30 takes within 10 s (over 2 a second), each start 0.2 s
            await pool.initialize(backend, {})
            await asyncio.sleep(0.02)
        # 2 x (over 2/s) x (0.2 s + 0.05 s after the answer): over 1, so 2, the cap
        assert pool.target(backend, ("slowstart", "{}")) == 2
        await _until(lambda: pool.ready("slowstart") == 2)
        await asyncio.sleep(0.5)
        assert pool.ready("slowstart") == 2  # never past the cap
    finally:
        await pool.close()
