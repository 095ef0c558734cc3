"""Per-key limits: requests a second (a token bucket) and live sessions (counted in Temporal
visibility, plus the ones this server made that visibility may not show yet)."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

from temporalio.client import Client

from contract import UserIdAttr
from workflows import SessionWorkflow

#: How long a session this server made is counted even if visibility does not list it yet.
_RECENT_SECONDS = 30.0
_QUERY_TIMEOUT = 5.0


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str, rate: float, burst: float) -> float:
        """0 when the request may go now, else the seconds until it may."""
        now = time.monotonic()
        tokens, at = self._buckets.get(key_id, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens >= 1:
            self._buckets[key_id] = (tokens - 1, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1 - tokens) / rate


class SessionQuota:
    """Counts a user's live sessions (temporary ones not included)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        #: user -> {workflow id: when this server made it}
        self._recent: dict[str, dict[str, float]] = {}

    async def live(self, user_id: str) -> set[str]:
        query = (
            f"{UserIdAttr.name} = '{user_id}' AND ExecutionStatus = 'Running' "
            "AND WorkflowType = 'SessionWorkflow'"
        )
        ids = {e.id async for e in self._client.list_workflows(query) if ":tmp-" not in e.id}
        now = time.monotonic()
        recent = self._recent.get(user_id, {})
        for workflow_id, at in list(recent.items()):
            if now - at > _RECENT_SECONDS:
                del recent[workflow_id]
        return ids | set(recent)

    async def over(self, user_id: str, limit: int, workflow_id: str) -> tuple[int, float] | None:
        """None when making (or opening) ``workflow_id`` stays within ``limit``; else the live
        count and the seconds until the soonest of them expires (at least 1)."""
        live = await self.live(user_id)
        if workflow_id in live or len(live) < limit:
            return None
        return len(live), await self._soonest_deadline(live)

    def made(self, user_id: str | None, workflow_id: str) -> None:
        if user_id is not None:
            self._recent.setdefault(user_id, {})[workflow_id] = time.monotonic()

    def gone(self, user_id: str | None, workflow_id: str) -> None:
        if user_id is not None:
            self._recent.get(user_id, {}).pop(workflow_id, None)

    async def _soonest_deadline(self, ids: set[str]) -> float:
        async def deadline(workflow_id: str) -> datetime | None:
            handle = self._client.get_workflow_handle_for(SessionWorkflow.run, workflow_id)
            try:
                view = await asyncio.wait_for(
                    handle.query(SessionWorkflow.describe), _QUERY_TIMEOUT
                )
            except Exception:
                return None
            return view.deadline

        found = [d for d in await asyncio.gather(*(deadline(i) for i in ids)) if d is not None]
        if not found:
            return 60.0
        seconds = (min(found) - datetime.now(UTC)).total_seconds()
        return float(max(1, math.ceil(seconds)))
