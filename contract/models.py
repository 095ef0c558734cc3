"""Pydantic models the other messages are made of: a session's status, tools, envelopes, events,
checkpoints and the state a session carries; the shared field rules.

The requests and the session's view are in ``contract.requests``, the activities' inputs and
outputs in ``contract.activity_io``; ``contract`` re-exports them all."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from temporalio.contrib.workflow_streams import WorkflowStreamState

from contract.codes import ErrorCode
from contract.limits import (
    DEFAULT_TTL_SECONDS,
    MAX_CONFIG_BYTES,
    MAX_IDLE_SECONDS,
    MAX_METADATA_BYTES,
    MAX_NAME_CHARS,
    MAX_PAUSED_TTL_SECONDS,
    MAX_TTL_SECONDS,
    json_problem,
    json_size,
)

#: Ids: sandbox, user, agent (the same rule everywhere: ``contract.limits.ID_PATTERN``).
_ID = r"^[A-Za-z0-9._@:-]{1,200}$"
_REQUEST_ID = Field(default="", max_length=200)


def _within(field: str, value: Any, limit: int) -> Any:
    """``value`` when it travels as JSON (``json_problem``: error type ``not_json``) within
    ``limit`` bytes (``too_large``, so a caller can answer TOO_LARGE)."""
    problem = json_problem(field, value)
    if problem is not None:
        raise PydanticCustomError("not_json", problem)
    size = json_size(value)
    if size > limit:
        raise PydanticCustomError(
            "too_large",
            "{field} is {size} bytes as JSON; the limit is {limit} bytes",
            {"field": field, "size": size, "limit": limit},
        )
    return value


def _seconds(high: float, default: float | None = None) -> Any:
    """A finite number of seconds in (0, high]."""
    return Field(default=default, gt=0, le=high, allow_inf_nan=False)


class _Model(BaseModel):
    # Unknown fields are ignored, so an older worker can read a newer client's message.
    model_config = ConfigDict(extra="ignore")


class SessionStatus(StrEnum):
    """Where a session is in its life, as callers and the SessionState search attribute see it.

    The workflow's own phase (``workflows.phase.Phase``) adds the transient DRAINING and CLOSING.
    """

    STARTING = "starting"
    ACTIVE = "active"
    #: No call for the session's ``idle_seconds``; the instance is kept.
    IDLE = "idle"
    #: The instance is released; record, snapshot and checkpoints are kept; the next call resumes.
    PAUSED = "paused"
    CLOSED = "closed"
    EXPIRED = "expired"
    ERROR = "error"

    @property
    def is_final(self) -> bool:
        return self in (SessionStatus.CLOSED, SessionStatus.EXPIRED, SessionStatus.ERROR)


# --- tools -------------------------------------------------------------------------------------


class ToolSpec(_Model):
    """What a tool is and which parameters it takes (a JSON schema made from its signature)."""

    name: str
    resource_type: str
    description: str = ""
    shared: bool = False
    #: Safe to run again after its worker was lost mid-call.
    idempotent: bool = False
    params_schema: dict[str, Any] = Field(default_factory=dict)


# --- envelopes ---------------------------------------------------------------------------------


class EnvelopeMeta(_Model):
    tool: str = ""
    resource_type: str = ""
    session_id: str | None = None
    temporary_session: bool = False
    request_id: str = ""
    execution_time_ms: float = 0.0
    workflow_id: str | None = None
    #: True when the tool belongs to a shared resource (no session was used).
    shared: bool = False
    #: Parameters the tool does not declare, dropped before it ran (not with ``strict_params``:
    #: then they answer 4000), as AgentFlow's tools take ``**kwargs``.
    ignored_params: list[str] = Field(default_factory=list)
    #: The call found the session paused (idle-suspended or paused by request) and resumed it:
    #: a new instance restored from its snapshot ran the call.
    resumed: bool = False


class Envelope(_Model):
    """The answer to every execute, success or not."""

    code: int = ErrorCode.SUCCESS
    message: str = "success"
    data: Any = None
    meta: EnvelopeMeta = Field(default_factory=EnvelopeMeta)

    @property
    def ok(self) -> bool:
        return self.code == ErrorCode.SUCCESS


class ToolOutcome(_Model):
    """What a tool call produced on the worker; the workflow adds the envelope's meta."""

    code: int = ErrorCode.SUCCESS
    message: str = "success"
    data: Any = None
    execution_time_ms: float = 0.0
    #: Set by the worker when the tool belongs to a shared resource.
    shared: bool = False
    #: The instance's state after the call (Backend.snapshot), kept by the workflow for recovery.
    snapshot: dict[str, Any] | None = None
    #: A local call found no instance on this worker and ran nothing: call the pinned queue.
    held_elsewhere: bool = False
    #: Parameters the tool does not declare, dropped before it ran (``EnvelopeMeta``).
    ignored_params: list[str] = Field(default_factory=list)


# --- workflow input and carried state ----------------------------------------------------------


class InstanceInfo(_Model):
    """A live instance of a resource, held by one worker process."""

    session_id: str
    task_queue: str
    worker: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    tools: list[ToolSpec] = Field(default_factory=list)
    #: True when the instance was brought to a snapshot of a lost or moved predecessor.
    restored: bool = False


class SessionEvent(_Model):
    """One entry of a session's event log."""

    id: int
    at: datetime
    kind: str
    request_id: str = ""
    tool: str = ""
    code: int = 0
    message: str = ""
    session_id: str | None = None
    #: For messages: who spoke (user, assistant, system, tool).
    role: str = ""
    #: For messages and caller events: what was said or recorded (JSON).
    content: Any = None


class Checkpoint(_Model):
    """A saved point of a session: the caller's data and the instance's snapshot at that time."""

    checkpoint_id: str
    created_at: datetime
    label: str = ""
    data: Any = None
    #: The backend snapshot when the checkpoint was saved; a resume can restore it.
    snapshot: dict[str, Any] | None = None
    size_bytes: int = 0


class CarriedState(_Model):
    """Everything a session carries across continue-as-new."""

    status: SessionStatus = SessionStatus.STARTING
    config: dict[str, Any] = Field(default_factory=dict)
    instance: InstanceInfo | None = None
    created_at: datetime | None = None
    deadline: datetime | None = None
    call_count: int = 0
    #: The latest Backend.snapshot of the instance: what a replacement instance restores.
    snapshot: dict[str, Any] | None = None
    #: Why the session is in ERROR, in words a person understands.
    error: str | None = None
    #: ... and as a result code (4007 initialize failed, 4012 a config the worker refused).
    error_code: int | None = None
    next_event_id: int = 1
    events: list[SessionEvent] = Field(default_factory=list)
    #: Oldest entries trimmed from ``events`` (they stay in the Temporal history of their run).
    dropped_events: int = 0
    name: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    last_activity: datetime | None = None
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    #: request_id -> answer, so a retried request is answered once even across runs.
    recent_results: dict[str, Envelope] = Field(default_factory=dict)
    #: "<request>:<request_id>" of the signalled requests already answered to their reply_to.
    replied: list[str] = Field(default_factory=list)
    #: The live output stream's newest items and offsets (``contract.output``), set only when
    #: the session continues as new.
    output_stream: WorkflowStreamState | None = None
    #: PAUSED by ``idle_suspend_seconds`` (its deadline kept), not by a request or its deadline.
    suspended: bool = False


class SessionInput(_Model):
    """The single argument of SessionWorkflow."""

    sandbox_id: str = Field(pattern=_ID)
    #: Empty for a session with no resource (a conversation record).
    resource_type: str = Field(max_length=64)
    config: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds: float = _seconds(MAX_TTL_SECONDS, DEFAULT_TTL_SECONDS)
    temporary: bool = False
    user_id: str | None = Field(default=None, pattern=_ID)
    agent_id: str | None = Field(default=None, pattern=_ID)
    name: str = Field(default="", max_length=MAX_NAME_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Quiet time after which an ACTIVE session shows IDLE; None: never.
    idle_seconds: float | None = _seconds(MAX_IDLE_SECONDS)
    #: At the deadline: "destroy" closes the session as EXPIRED, "pause" releases the instance
    #: and keeps the record for ``paused_ttl_seconds`` more.
    on_expire: Literal["destroy", "pause"] = "destroy"
    paused_ttl_seconds: float = _seconds(MAX_PAUSED_TTL_SECONDS, 7 * 86400.0)
    #: Quiet time after which the session snapshots, releases its instance and turns PAUSED
    #: (its deadline unchanged); the next call resumes it. None: never.
    idle_suspend_seconds: float | None = _seconds(MAX_IDLE_SECONDS)
    #: A call to a PAUSED session resumes it (``meta.resumed``); False: it answers 4007 instead.
    #: A request's own ``auto_resume`` wins.
    auto_resume: bool = True
    #: The workflow id of the session this one was forked from (``ParentSession``).
    parent_session: str | None = Field(default=None, max_length=1000)
    #: The backend snapshot a forked session's first instance restores (the parent's state).
    restore: dict[str, Any] | None = None
    #: The request that started the session; its open update answers "created".
    opened_by: str = _REQUEST_ID
    #: False on servers that cannot register custom search attributes (the time-skipping one).
    search_attributes: bool = True
    carried: CarriedState | None = None

    @field_validator("config")
    @classmethod
    def _config_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _within("config", value, MAX_CONFIG_BYTES)

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _within("metadata", value, MAX_METADATA_BYTES)


class SharedToolsInput(_Model):
    """The single argument of SharedToolsWorkflow."""

    sandbox_id: str
    idle_seconds: float = Field(default=3600.0, gt=0)
    call_count: int = 0
    recent_results: dict[str, Envelope] = Field(default_factory=dict)


class SessionSummary(_Model):
    """The workflow result: what the session was and how it ended."""

    sandbox_id: str
    resource_type: str
    status: SessionStatus
    reason: str
    call_count: int
    last_session_id: str | None = None
    last_envelope: Envelope | None = None
