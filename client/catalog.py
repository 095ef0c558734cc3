"""The tools the workers offer, and how a caller's tool name is read.

A tool's full name is ``"<resource>:<action>"``. As in AgentFlow, a caller may also name it by
its action alone when only one resource has that action (``"run"`` for ``"bash:run"``), or with
another separator (``"bash.run"``, ``"bash_run"``, ``"bash-run"``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from contract import ErrorCode, ToolSpec

#: How long a loaded list of tools is trusted before it is asked for again.
CATALOG_TTL_SECONDS = 60.0


@dataclass
class Resolved:
    """A tool name read against the catalog: ``tool`` when it names one, otherwise the code
    (unknown or ambiguous: 4002), message and data a caller is answered with."""

    tool: str | None
    code: int = ErrorCode.SUCCESS
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class ToolCatalog:
    """Tool specs loaded from a worker on first need and kept for a while; one catalog can serve
    many Sandboxes (the HTTP server shares one).

    Args:
        load: Answers every tool a worker offers (Sandbox runs a warmup that warms nothing).
        ttl: Seconds a loaded list is kept.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[list[ToolSpec]]],
        *,
        ttl: float = CATALOG_TTL_SECONDS,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._specs: dict[str, ToolSpec] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    def update(self, specs: Iterable[ToolSpec]) -> None:
        """Take a fresh list (a warmup answers one)."""
        self._specs = {s.name: s for s in specs}
        self._loaded_at = time.monotonic()

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    def _fresh(self) -> bool:
        return self._loaded_at is not None and time.monotonic() - self._loaded_at < self._ttl

    def resource_types(self) -> set[str] | None:
        """The resource types the workers offer, from a fresh list; None when there is none
        (knowing would take asking a worker: no list is loaded for this)."""
        if not self._fresh():
            return None
        return {s.resource_type for s in self._specs.values()}

    async def specs(self) -> list[ToolSpec]:
        """Every tool, loading the list when it is missing or old (raises when no worker can be
        asked)."""
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    self.update(await self._load())
        return list(self._specs.values())

    async def spec(self, name: str) -> ToolSpec | None:
        return next((s for s in await self.specs() if s.name == name), None)

    async def resolve(self, action: str) -> Resolved:
        """The full name ``action`` stands for. A name with a ``:`` is taken as it is (the
        session answers an unknown one with the tools it has)."""
        if ":" in action:
            return Resolved(action)
        return resolve_name(action, [s.name for s in await self.specs()])


def resolve_name(action: str, names: Iterable[str]) -> Resolved:
    """Read a name without ``:`` against the full names of the known tools."""
    known = sorted(set(names))
    if ":" in action:
        return Resolved(action)
    resources = {name.split(":", 1)[0] for name in known}
    for sep in (".", "_", "-"):
        prefix, found, rest = action.partition(sep)
        if found and prefix in resources and f"{prefix}:{rest}" in known:
            return Resolved(f"{prefix}:{rest}")
    candidates = [name for name in known if name.split(":", 1)[1] == action]
    if len(candidates) == 1:
        return Resolved(candidates[0])
    if candidates:
        return Resolved(
            None,
            ErrorCode.UNKNOWN_TOOL,
            f"ambiguous tool name {action!r}: it may be any of {candidates}; "
            "use the full name '<resource>:<action>'",
            {"candidates": candidates},
        )
    return Resolved(
        None,
        ErrorCode.UNKNOWN_TOOL,
        f"unknown tool {action!r}: name a tool as '<resource>:<action>' or by an action only one "
        f"resource has (available: {', '.join(known) or 'none'})",
        {"action": action},
    )


def timeout_param(spec: ToolSpec | None) -> bool:
    """Does the tool take a ``timeout`` parameter of its own?"""
    if spec is None:
        return False
    return "timeout" in spec.params_schema.get("properties", {})


#: Resource types whose sessions offer tools of their own (an ``mcp`` session's servers'
#: ``mcp:<server>.<tool>``), listed by their ``<type>:list_tools`` tool.
SESSION_TOOL_TYPES = ("mcp",)


async def session_tools(
    describe: Callable[[str], Awaitable[Mapping[str, Any] | None]],
    execute: Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]],
    known: Iterable[str],
) -> list[ToolSpec]:
    """The tools a sandbox's live sessions offer beyond the workers' catalog (``known``): an
    ``mcp`` session's servers' tools, named ``mcp:<server>.<tool>`` with the input schemas the
    servers listed. ``describe`` is the sandbox's ``describe_session``; the schemas come from
    one ``mcp:list_tools`` call, made only when the session's view lists such tools."""
    catalog = set(known)
    found: list[ToolSpec] = []
    for resource_type in SESSION_TOOL_TYPES:
        try:
            view = await describe(resource_type)
        except Exception:  # another user's session, or none reachable: nothing to add
            continue
        names = [n for n in (view or {}).get("tools") or [] if n not in catalog]
        if not names:
            continue
        answer = await execute(f"{resource_type}:list_tools", {})
        listed = {
            t.get("name"): t
            for t in ((answer.get("data") or {}).get("tools") or [])
            if answer.get("code") == ErrorCode.SUCCESS and isinstance(t, dict)
        }
        for name in names:
            entry = listed.get(name) or {}
            found.append(
                ToolSpec(
                    name=name,
                    resource_type=resource_type,
                    description=str(entry.get("description") or ""),
                    params_schema=dict(entry.get("input_schema") or {}),
                )
            )
    return found
