"""Clients of durable sessions: the seed-compatible Sandbox, its synchronous flavour, and the
owner-scoped SessionManager."""

from client.errors import PermissionDenied, QuotaExceeded, SessionError, SessionNotFound
from client.sandbox import Sandbox
from client.session_manager import SessionManager, SessionRecord
from client.sync import SyncSandbox
from runtime.connection import TemporalUnreachable

__all__ = [
    "PermissionDenied",
    "QuotaExceeded",
    "Sandbox",
    "SessionError",
    "SessionManager",
    "SessionNotFound",
    "SessionRecord",
    "SyncSandbox",
    "TemporalUnreachable",
]
