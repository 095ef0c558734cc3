"""Clients of durable sessions: the seed-compatible Sandbox and its synchronous flavour."""

from client.sandbox import Sandbox
from client.sync import SyncSandbox

__all__ = ["Sandbox", "SyncSandbox"]
