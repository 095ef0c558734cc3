"""Request bodies, as AgentFlow's client sends them (unknown fields are ignored, as AgentFlow's
server ignores them); our additions are optional. ``worker_id`` may also come in the
``X-Worker-ID`` header AgentFlow's client sends with every request."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WorkerBody(_Body):
    worker_id: str | None = Field(default=None, description="the sandbox (AgentFlow: worker) id")


class ExecuteBody(WorkerBody):
    action: str = Field(description='"bash:run", or an action only one resource has ("run")')
    params: dict[str, Any] | None = None
    timeout: float | None = Field(default=None, description="seconds (AgentFlow's)")
    trace_id: str | None = None
    request_id: str | None = Field(
        default=None, description="update id: a call sent again with it runs once (ours)"
    )
    message_id: str | None = Field(default=None, description="AgentFlow's; used as request_id")
    session_id: str | None = Field(default=None, description="pin the call to one instance")


class BatchBody(WorkerBody):
    actions: list[dict[str, Any]] = Field(
        description='[{"action": ..., "params": {...}, "timeout": ...}, ...]'
    )
    parallel: bool = False
    stop_on_error: bool = True
    trace_id: str | None = None


class SessionBody(WorkerBody):
    resource_type: str | None = None


class CreateBody(SessionBody):
    session_config: dict[str, Any] | None = None
    custom_name: str | None = None
    ttl: float | None = Field(default=None, description="seconds the session lives idle (ours)")


class RefreshBody(SessionBody):
    ttl: float | None = Field(default=None, description="a new TTL in seconds (ours)")


class ReinitializeBody(SessionBody):
    config: dict[str, Any] | None = None


class EventsBody(SessionBody):
    start_id: int | None = None
    end_id: int | None = None
    reverse: bool = False
    kind: str | None = None
    limit: int = 50


class InitResourceBody(WorkerBody):
    resource_type: str | None = None
    init_config: dict[str, Any] | None = None


class InitBatchBody(WorkerBody):
    resource_configs: dict[str, dict[str, Any]] = Field(default_factory=dict)


class InitFromConfigBody(WorkerBody):
    config_path: str
    override_params: dict[str, Any] | None = None


class WarmupBody(_Body):
    backends: list[str] | None = None


class ShutdownBody(_Body):
    force: bool = False
    cleanup_sessions: bool = True
