"""Per-key limits: requests a second (a token bucket) and live sessions (counted in Temporal
visibility, plus the ones this server made or is making that visibility may not show yet).

A new session takes its place in the count before it is made, under a lock per user, so
concurrent creations cannot all see the same count and all go ahead. The lock and the places are
this process's: two servers sharing keys could each let a user reach the limit at the same time.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

from client.workflow_api import SessionQuery, SessionWorkflows

#: The limits of a key whose line sets none (the server's ``--rate``, ``--burst`` and
#: ``--max-sessions`` change them), from what one machine serves (bench/scale.py, figures in
#: bench/README.md "Scale"): a key may use a whole 2-core machine and the limiter only stops a
#: runaway client. Calls: this 2-core machine served 70-140 calls a second over HTTP at
#: saturation (loaded and less loaded), so 200 a second is above it. Burst: 64 parallel rollouts
#: sending a few calls each at once (a batch counts each action) fit in 400. Sessions: a bash
#: session's whole process tree takes ~8.7 MB and a code session's ~13.9 MB, so 256 live sessions
#: (bash and code for 128 rollouts) take under 4 GB. The limits are per HTTP process:
#: docs/scaling.md says how to divide them.
DEFAULT_RATE = 200.0
DEFAULT_BURST = 400
DEFAULT_MAX_SESSIONS = 256

#: How long a session this server made is counted even if visibility does not list it yet.
_RECENT_SECONDS = 30.0
_QUERY_TIMEOUT = 5.0


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str, rate: float, burst: float, count: float = 1) -> float:
        """Take ``count`` tokens: 0 when the requests may go now (all of them), else the seconds
        until they may (none taken). ``count`` over ``burst`` never fits: the caller refuses it."""
        now = time.monotonic()
        tokens, at = self._buckets.get(key_id, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens >= count:
            self._buckets[key_id] = (tokens - count, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (count - tokens) / rate


class OverQuota(Exception):
    """A new session would pass the limit: the live count, the seconds until one expires."""

    def __init__(self, count: int, retry: float) -> None:
        super().__init__(f"{count} live sessions")
        self.count = count
        self.retry = retry


class SessionQuota:
    """Counts a user's live sessions (temporary ones not included)."""

    def __init__(self, sessions: SessionWorkflows) -> None:
        self._sessions = sessions
        #: user -> {workflow id: when this server made it, or began to}
        self._recent: dict[str, dict[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def live(self, user_id: str) -> set[str]:
        ids = await self._sessions.ids(SessionQuery(user_id=user_id, temporary=False))
        now = time.monotonic()
        recent = self._recent.get(user_id, {})
        for workflow_id, at in list(recent.items()):
            if now - at > _RECENT_SECONDS:
                del recent[workflow_id]
        return ids | set(recent)

    async def reserve(self, user_id: str, limit: int, workflow_id: str) -> bool:
        """Hold a place for ``workflow_id`` among the user's sessions before it is made: True
        when a place was taken (give it back with ``gone`` if the session is not made), False
        when the session is live already. Raises OverQuota when there is no place (its retry:
        the seconds until the soonest of the user's sessions expires, at least 1)."""
        async with self._locks.setdefault(user_id, asyncio.Lock()):
            live = await self.live(user_id)
            if workflow_id in live:
                return False
            if len(live) < limit:
                self._recent.setdefault(user_id, {})[workflow_id] = time.monotonic()
                return True
        raise OverQuota(len(live), await self._soonest_deadline(live))

    def made(self, user_id: str | None, workflow_id: str) -> None:
        if user_id is not None:
            self._recent.setdefault(user_id, {})[workflow_id] = time.monotonic()

    def gone(self, user_id: str | None, workflow_id: str) -> None:
        if user_id is not None:
            self._recent.get(user_id, {}).pop(workflow_id, None)

    async def _soonest_deadline(self, ids: set[str]) -> float:
        async def deadline(workflow_id: str) -> datetime | None:
            try:
                view = await asyncio.wait_for(self._sessions.describe(workflow_id), _QUERY_TIMEOUT)
            except Exception:
                return None
            return view.deadline

        found = [d for d in await asyncio.gather(*(deadline(i) for i in ids)) if d is not None]
        if not found:
            return 60.0
        seconds = (min(found) - datetime.now(UTC)).total_seconds()
        return float(max(1, math.ceil(seconds)))
