"""Pydantic models of what the session activities take and answer (``contract.activities``
names the activities)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from contract.models import ToolSpec, _Model


class WarmupInput(_Model):
    resource_types: list[str] | None = None


class WarmupResult(_Model):
    worker: str
    warmed: list[str]
    tools: list[ToolSpec]


class InitializeInput(_Model):
    sandbox_id: str
    resource_type: str
    session_id: str
    config: dict[str, Any] = Field(default_factory=dict)
    #: The session's workflow, told by the worker when it releases the instance on shutdown.
    workflow_id: str = ""
    #: A snapshot to restore into the new instance (recovery and migration).
    restore: dict[str, Any] | None = None


class InstanceReleased(_Model):
    """Signal from a stopping worker: the instance is gone, here is its last state."""

    session_id: str
    snapshot: dict[str, Any] | None = None
    reason: str = "worker shutdown"


class ToolCallInput(_Model):
    session_id: str | None
    tool: str
    params: dict[str, Any] = Field(default_factory=dict)
    request_id: str = ""
    #: For a temporary session run in one activity: the instance to create, use and clean up.
    initialize: InitializeInput | None = None
    #: Publish the output to the calling workflow's stream as it arrives (live output).
    stream: bool = False
    #: Refuse undeclared parameters (4000); otherwise they are dropped and named in the outcome.
    strict_params: bool = False


class CleanupInput(_Model):
    session_id: str
    resource_type: str
