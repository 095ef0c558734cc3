"""What every request shares: the Temporal client and its typed gateway, the keys, the limits,
the tool catalog and a Sandbox per (user, admin, sandbox id)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client

from client import Sandbox
from client.agentflow import warmup_status
from client.catalog import ToolCatalog
from client.workflow_api import SessionWorkflows
from contract import ToolSpec
from http_api.caller import Caller
from http_api.keys import KeyStore
from http_api.limits import (
    DEFAULT_BURST,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_RATE,
    RateLimiter,
    SessionQuota,
)

#: Sandboxes kept for (user, admin, worker id): each remembers which resources are shared.
_SANDBOX_CACHE = 4096


@dataclass
class Limits:
    """Defaults for keys that set none (why these: http_api/limits.py)."""

    max_sessions: int = DEFAULT_MAX_SESSIONS
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    max_body_bytes: int = 2 * 1024 * 1024


class State:
    """What the routes share: the Temporal client, keys, limits, tools and sandboxes."""

    def __init__(
        self,
        client: Client,
        keys: KeyStore,
        limits: Limits,
        *,
        task_queue: str,
        session_ttl: float | None,
        config_dir: Path | None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.limits = limits
        self.task_queue = task_queue
        self.session_ttl = session_ttl
        self.config_dir = config_dir.resolve() if config_dir else None
        self.sessions = SessionWorkflows(client, task_queue)
        self.rates = RateLimiter()
        self.quota = SessionQuota(self.sessions)
        self.tools = ToolCatalog(self._load_tools)
        self.warmed: set[str] = set()
        self._sandboxes: OrderedDict[tuple[str | None, bool, str], Sandbox] = OrderedDict()

    async def _load_tools(self) -> list[ToolSpec]:
        return await self.sessions.tools("http-tools")

    def sandbox(self, who: Caller, worker_id: str) -> Sandbox:
        """The caller's Sandbox for a worker id: the owner is the key's user."""
        key = (who.user_id, who.admin, worker_id)
        found = self._sandboxes.get(key)
        if found is None:
            found = Sandbox(
                worker_id,
                client=self.client,
                user_id=who.user_id,
                admin=who.admin,
                task_queue=self.task_queue,
                session_ttl=self.session_ttl,
                destroy_on_exit=False,
                tools=self.tools,
            )
            self._sandboxes[key] = found
            if len(self._sandboxes) > _SANDBOX_CACHE:
                self._sandboxes.popitem(last=False)
        else:
            self._sandboxes.move_to_end(key)
        return found

    async def warmup(self, sandbox: Sandbox, names: list[str] | None) -> dict[str, Any]:
        """Warm backends (all when None) through ``sandbox``: its answer, remembered as warmed
        by this server, with the server's summary."""
        answer = await sandbox.warmup(names)
        if answer["status"] == "success":
            self.warmed.update(answer["warmed"])
        answer["summary"] = (await self.warmup_status())["summary"]
        return answer

    async def warmup_status(self) -> dict[str, Any]:
        """Which backends the workers offer, and which were warmed through this server."""
        try:
            backends = {s.resource_type for s in await self.tools.specs()}
        except Exception:
            backends = set()
        return warmup_status(backends | self.warmed, self.warmed)
