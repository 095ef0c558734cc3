"""The sessions' Nexus service: what a workflow in another namespace calls.

    sessions = workflow.create_nexus_client(service=SessionsService, endpoint=NEXUS_ENDPOINT)
    await sessions.execute_operation(SessionsService.create, SessionRequest(...))
    envelope = await sessions.execute_operation(SessionsService.execute, ToolCall(...))

``create`` opens a sandbox's session (an open one answers "exists"), ``execute`` runs one tool call
on it (opening it when it is not live) and answers its envelope, ``destroy`` closes it. Each is
a synchronous operation backed by the session workflows (an update each); ``execute`` sends the
Nexus request id as its request id, so a retried operation runs its tool once. The handler is
``integrations.nexus_handler.SessionsNexusHandler``, registered by every session worker; the
endpoint ``NEXUS_ENDPOINT`` targets the workers' task queue (``durable-sessions serve`` creates
it). Safe to import from workflow code.
"""

from __future__ import annotations

from typing import Any

import nexusrpc

from contract import Envelope
from contract.naming import NEXUS_ENDPOINT
from integrations.calls import SessionRequest, ToolCall

__all__ = ["NEXUS_ENDPOINT", "SessionRequest", "SessionsService", "ToolCall"]


@nexusrpc.service(name="DurableSessions")
class SessionsService:
    create: nexusrpc.Operation[SessionRequest, dict[str, Any]]
    execute: nexusrpc.Operation[ToolCall, Envelope]
    destroy: nexusrpc.Operation[SessionRequest, dict[str, Any]]
