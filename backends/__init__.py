"""Backends: the resources a session holds, and the tools they offer.

Write a backend by subclassing :class:`Backend` and marking its tools with :func:`tool`; register it
under the ``durable_sessions.backends`` entry point group to load it in every worker.
"""

from backends.base import Backend, ToolBinding, scan_tools, tool
from backends.host import (
    BUILTIN_BACKENDS,
    BackendHost,
    ToolCallError,
    load_backends,
    registered_backends,
)

__all__ = [
    "BUILTIN_BACKENDS",
    "Backend",
    "BackendHost",
    "ToolBinding",
    "ToolCallError",
    "load_backends",
    "registered_backends",
    "scan_tools",
    "tool",
]
