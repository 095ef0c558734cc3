"""Instances started ahead of time: a new session of a known config starts on one already running.

Starting a sandboxed shell or interpreter costs tens of milliseconds, most of a temporary call and
of a session's first call. A backend that sets ``warm_instances`` gets that many instances of the
default config started when it warms, and of any other config once it was asked for twice; each
one taken is replaced in the background. An instance is handed to one session only and never
reused, so a pooled session is as isolated as a fresh one.

Under demand a config keeps more ready than ``warm_instances``: as many as are taken while one
starts, twice over (the rate of takes over the last :data:`DEMAND_WINDOW` seconds times the
measured start time), up to ``$SESSIONS_WARM_MAX`` per config (default 4); refills then start
two at a time. Sequential temporary ``code:execute`` calls otherwise found the single ready
interpreter gone and started their own (issue 28). Once the takes stop, the count falls back to
``warm_instances`` as the ready ones are used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections import OrderedDict, deque
from typing import Any

from backends import Backend

log = logging.getLogger(__name__)

#: Distinct configs kept ready at once; the least recently asked one gives its instances up.
MAX_CONFIGS = 4
#: A config other than the default one is kept ready from its second request on.
ASKED_BEFORE_POOLED = 2
#: Seconds a refill waits: starting a sandbox blocks the event loop for a few milliseconds,
#: better spent after the call that took an instance was answered.
AFTER_THE_ANSWER = 0.05
#: Seconds of takes that size a config's ready count.
DEMAND_WINDOW = 10.0
#: Ready instances one config may keep under demand ($SESSIONS_WARM_MAX).
WARM_MAX_ENV = "SESSIONS_WARM_MAX"
DEFAULT_WARM_MAX = 4
#: Starts one refill runs at once when it is two or more behind.
PARALLEL_STARTS = 2

Key = tuple[str, str]


def warm_max() -> int:
    return max(0, int(os.environ.get(WARM_MAX_ENV) or DEFAULT_WARM_MAX))


class WarmPool:
    """Ready instances per (resource type, config) of one worker. One event loop owns it."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._ready: dict[Key, list[dict[str, Any]]] = {}
        self._asked: OrderedDict[Key, int] = OrderedDict()
        self._filling: dict[Key, asyncio.Task[None]] = {}
        self._ending: set[asyncio.Task[None]] = set()
        self._backend_of: dict[Key, Backend] = {}  # which backend made a key's instances
        self._prefilled: set[str] = set()
        self._closed = False
        self._taken: dict[Key, deque[float]] = {}  # when instances were taken, per config
        self._start_seconds: dict[str, float] = {}  # a backend's start time (moving average)
        self.max_per_config = warm_max()

    def target(self, backend: Backend, key: Key) -> int:
        """How many of a config to keep ready: ``warm_instances``, more under demand."""
        base = backend.warm_instances
        taken = self._taken.get(key)
        if base <= 0 or not taken:
            return base
        now = time.monotonic()
        while taken and now - taken[0] > DEMAND_WINDOW:
            taken.popleft()
        # Takes a second over the time they span (a second at least): a config that just got
        # busy is seen as busy at once, not after a whole window.
        rate = len(taken) / min(DEMAND_WINDOW, max(1.0, now - taken[0]))
        start = self._start_seconds.get(backend.name, 0.1)
        # Little's law, twice over: what is taken while one is started (after the answer).
        wanted = math.ceil(2 * rate * (start + AFTER_THE_ANSWER))
        return max(base, min(max(base, self.max_per_config), wanted))

    def ready(self, resource_type: str) -> int:
        """Instances of this resource type waiting for a session."""
        return sum(len(v) for (name, _), v in self._ready.items() if name == resource_type)

    def prefill(self, backend: Backend) -> None:
        """Start the default config's instances, once per backend (it just warmed)."""
        if backend.warm_instances > 0 and backend.name not in self._prefilled:
            self._prefilled.add(backend.name)
            self._note((backend.name, _config_key({})), ASKED_BEFORE_POOLED)
            self._fill(backend, {})

    async def initialize(self, backend: Backend, config: dict[str, Any]) -> dict[str, Any]:
        """An instance for a new session: a ready one of this config, or one started now."""
        key = (backend.name, _config_key(config))
        ready = self._ready.get(key)
        info = ready.pop(0) if ready else None
        self._taken.setdefault(key, deque()).append(time.monotonic())
        if backend.warm_instances > 0 and self._note(key, 1) >= ASKED_BEFORE_POOLED:
            self._fill(backend, config)
        if info is None:
            info = await self._start(backend, config)
        return info

    async def _start(self, backend: Backend, config: dict[str, Any]) -> dict[str, Any]:
        """Start one instance, timing it (the start time sizes the ready count)."""
        started = time.monotonic()
        info = await backend.initialize(self.worker_id, config)
        took = time.monotonic() - started
        before = self._start_seconds.get(backend.name)
        self._start_seconds[backend.name] = took if before is None else 0.8 * before + 0.2 * took
        return info

    async def close(self) -> None:
        """Stop refilling, end every ready instance, and wait for the cleanups under way."""
        self._closed = True
        # Not cancelled: a start cut short could leave its sandbox behind. A refill sees the
        # pool closed once its start ends, and ends what it started.
        await asyncio.gather(*self._filling.values(), return_exceptions=True)
        for key in list(self._ready):
            self._drop(key)
        await asyncio.gather(*self._ending, return_exceptions=True)

    # --- bookkeeping ---------------------------------------------------------------------------

    def _note(self, key: Key, times: int) -> int:
        """Count a request of this config; forget (and end) the least recent beyond the cap."""
        self._asked[key] = self._asked.get(key, 0) + times
        self._asked.move_to_end(key)
        while len(self._asked) > MAX_CONFIGS:
            old, _ = self._asked.popitem(last=False)
            self._taken.pop(old, None)
            self._drop(old)
        return self._asked[key]

    def _drop(self, key: Key) -> None:
        """End a config's ready instances; a refill under way ends its own (it was dropped)."""
        backend = self._backend_of.pop(key, None)
        for info in self._ready.pop(key, []):
            assert backend is not None
            self._end(backend, info)

    def _fill(self, backend: Backend, config: dict[str, Any]) -> None:
        key = (backend.name, _config_key(config))
        if self._closed or key in self._filling:
            return
        self._backend_of[key] = backend
        self._filling[key] = asyncio.create_task(self._refill(backend, key, config))

    async def _refill(self, backend: Backend, key: Key, config: dict[str, Any]) -> None:
        """Start instances until the key has its count; one refill per key at a time."""
        try:
            ready = self._ready.setdefault(key, [])
            await asyncio.sleep(AFTER_THE_ANSWER)
            while not self._closed and len(ready) < self.target(backend, key):
                behind = self.target(backend, key) - len(ready)
                made = await self._starts(backend, config, min(behind, PARALLEL_STARTS))
                for info in made:
                    if isinstance(info, BaseException):
                        continue
                    if self._closed or self._ready.get(key) is not ready:
                        self._end(backend, info)
                    else:
                        ready.append(info)
                failed = [e for e in made if isinstance(e, BaseException)]
                if failed:  # the session's own initialize reports the same failure
                    log.warning(
                        "starting a ready %s instance failed", backend.name, exc_info=failed[0]
                    )
                    return
                if self._closed or self._ready.get(key) is not ready:
                    return
        finally:
            # In the task's own last step, not in a done callback: a take between the two would
            # find the key still filling, start no refill, and leave the pool empty.
            self._filling.pop(key, None)

    async def _starts(
        self, backend: Backend, config: dict[str, Any], count: int
    ) -> list[dict[str, Any] | BaseException]:
        """``count`` starts at once, each an instance or its exception (one: no extra task)."""
        if count <= 1:
            try:
                return [await self._start(backend, config)]
            except Exception as exc:
                return [exc]
        starts = [self._start(backend, config) for _ in range(count)]
        return list(await asyncio.gather(*starts, return_exceptions=True))

    def _end(self, backend: Backend, info: dict[str, Any]) -> None:
        async def cleanup() -> None:
            try:
                await backend.cleanup(self.worker_id, info)
            except Exception:
                log.exception("cleanup of a %s instance failed", backend.name)

        task = asyncio.create_task(cleanup())
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)


def _config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)
