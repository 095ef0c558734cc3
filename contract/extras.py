"""The install contract: which optional package each extra brings, and the error that names it.

The core install runs sessions: the worker with its bash and code backends, and the Python
client. The rest is an extra, the way the Temporal SDK ships its contrib integrations:
``pip install 'durable-sessions[http]'`` (``[mcp]``, ``[agents]``, ``[vm]``, ``[rag]``,
``[cli]``, or ``[all]``). Code that needs an optional package imports it where it is used, with
:func:`require`, so a missing one fails there, naming the extra, and nowhere else.
"""

from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "durable-sessions"

#: Top-level module of an optional package -> the extra that installs it (pyproject.toml).
EXTRAS: dict[str, str] = {
    "fastapi": "http",
    "starlette": "http",
    "uvicorn": "http",
    "httptools": "http",
    "mcp": "mcp",
    "mcp_types": "mcp",
    "agents": "agents",
    "openai": "agents",
    "pydantic_ai": "agents",
    "PIL": "vm",
    "bm25s": "rag",
    "click": "cli",
    "rich": "cli",
}


class MissingExtra(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that brings it."""

    def __init__(self, module: str, extra: str, needed_by: str) -> None:
        super().__init__(
            f"{needed_by} needs {module!r}, which is not installed: "
            f"pip install '{DISTRIBUTION}[{extra}]' (in a checkout: pip install -e '.[{extra}]')",
            name=module,
        )
        self.extra = extra


def missing_extra(
    exc: ModuleNotFoundError, needed_by: str, extra: str | None = None
) -> MissingExtra | None:
    """The error naming the extra for a failed import of an optional package, or None when the
    missing module is no optional package (a real bug: let it surface as it is). ``extra``
    names a larger extra that brings it (``cli`` brings ``http``)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    return MissingExtra(top, extra or EXTRAS[top], needed_by)


def require(module: str, needed_by: str) -> ModuleType:
    """Import an optional module where it is used; a :class:`MissingExtra` when it is absent."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise (missing_extra(exc, needed_by) or exc) from None
