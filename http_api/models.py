"""Request bodies, as AgentFlow's client sends them (unknown fields are ignored, as AgentFlow's
server ignores them); our additions are optional. ``worker_id`` may also come in the
``X-Worker-ID`` header AgentFlow's client sends with every request."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from contract.limits import MAX_TTL_SECONDS

#: The error type of a number out of its range: answered 400 (4000), not 422 (4004 wrong type).
OUT_OF_RANGE = "out_of_range"


def _ttl(value: float | None) -> float | None:
    # Checked here, not by the session: out of range there is a client-side ValidationError,
    # which the server would answer with 500.
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_TTL_SECONDS):
        raise PydanticCustomError(
            OUT_OF_RANGE,
            f"ttl must be a number of seconds more than 0 and at most {MAX_TTL_SECONDS:.0f} "
            f"(30 days), got {value!r}",
        )
    return value


#: A session's TTL in seconds: finite, in (0, 30 days].
Ttl = Annotated[float | None, AfterValidator(_ttl)]


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
    strict_params: bool | None = Field(
        default=None,
        description="a parameter the tool does not declare answers 4000 instead of being "
        "dropped and named in meta.ignored_params (ours; also the X-Strict-Params header)",
    )
    auto_resume: bool | None = Field(
        default=None,
        description="false: a paused session answers 4007 instead of resuming (ours)",
    )


class BatchBody(WorkerBody):
    actions: list[dict[str, Any]] = Field(
        description='[{"action": ..., "params": {...}, "timeout": ...}, ...]'
    )
    parallel: bool = False
    stop_on_error: bool = True
    trace_id: str | None = None
    strict_params: bool | None = Field(
        default=None,
        description="for each action that does not say (its own strict_params), as in execute",
    )


class SessionBody(WorkerBody):
    resource_type: str | None = None


class CreateBody(SessionBody):
    session_config: dict[str, Any] | None = None
    custom_name: str | None = None
    ttl: Ttl = Field(default=None, description="seconds the session lives idle (ours)")
    idle_suspend_seconds: Ttl = Field(
        default=None, description="suspend the session after this long idle (ours)"
    )
    auto_resume: bool | None = Field(
        default=None, description="false: a call to a suspended session answers 4007 (ours)"
    )


class RefreshBody(SessionBody):
    ttl: Ttl = Field(default=None, description="a new TTL in seconds (ours)")


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
