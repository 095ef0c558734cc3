"""Pydantic models of the requests a session takes (updates, signals, queries) and of what it
answers about itself: its view and a page of its event log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from contract.codes import ErrorCode
from contract.limits import (
    MAX_BATCH_CALLS,
    MAX_CONFIG_BYTES,
    MAX_KIND_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_METADATA_BYTES,
    MAX_NAME_CHARS,
    MAX_PARAMS_BYTES,
    MAX_REASON_CHARS,
    MAX_ROLE_CHARS,
    MAX_TTL_SECONDS,
)
from contract.models import (
    _ID,
    _REQUEST_ID,
    Envelope,
    SessionEvent,
    SessionInput,
    SessionStatus,
    _Model,
    _seconds,
    _within,
)

#: The most sessions one fork makes.
MAX_FORK = 32


class OwnedRequest(_Model):
    """A request that names the caller's user.

    A session with an owner refuses another user's request, and one that names no user, unless
    ``admin`` is set (operators' tools; off by default). A session with no owner takes any.
    """

    user_id: str | None = Field(default=None, pattern=_ID)
    admin: bool = False


class ReplyTo(_Model):
    """Where a signalled request's answer goes: a signal to this workflow (any language)."""

    workflow_id: str = Field(min_length=1, max_length=1000)
    #: None: the workflow's current run (a caller that continued as new still gets it).
    run_id: str | None = Field(default=None, max_length=200)
    signal: str = Field(default="session_reply", min_length=1, max_length=200)


class SessionReply(_Model):
    """The answer a session signals back to a request's ``reply_to``, once per request id."""

    request_id: str
    #: The request answered: execute, refresh, reinitialize or destroy.
    request: str
    envelope: Envelope


class Replyable(OwnedRequest):
    """A request that, sent as a signal, may ask for its answer by signal (``reply_to``)."""

    request_id: str = _REQUEST_ID
    reply_to: ReplyTo | None = None


class ExecuteRequest(Replyable):
    tool: str = Field(max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    #: When set, the call must reach exactly this instance (4007 otherwise).
    session_id: str | None = Field(default=None, max_length=200)
    #: Live output: publish what the call prints to the session's stream while it runs
    #: (``contract.output``); the call then runs as a regular activity on the instance's queue.
    stream: bool = False
    #: Refuse a parameter the tool does not declare (4000) instead of dropping it and naming it
    #: in ``meta.ignored_params``.
    strict_params: bool = False
    #: A PAUSED session: resume it and run the call (True), or answer 4007 (False); None: the
    #: session's ``auto_resume``.
    auto_resume: bool | None = None

    @field_validator("params")
    @classmethod
    def _params_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _within("params", value, MAX_PARAMS_BYTES)


class BatchRequest(OwnedRequest):
    """Several calls in one update, run one after another and answered in order; each call
    keeps its own request id (a retried batch is answered, not run again)."""

    calls: list[ExecuteRequest] = Field(min_length=1, max_length=MAX_BATCH_CALLS)


class OpenRequest(OwnedRequest):
    request_id: str = _REQUEST_ID


class RefreshRequest(Replyable):
    #: A new TTL for the session; None keeps the current one.
    ttl_seconds: float | None = _seconds(MAX_TTL_SECONDS)


class ReinitializeRequest(Replyable):
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _config_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _within("config", value, MAX_CONFIG_BYTES)


class ReinitializeResult(_Model):
    status: str
    old_session_id: str | None = None
    new_session_id: str | None = None
    config_applied: dict[str, Any] = Field(default_factory=dict)
    code: int = ErrorCode.SUCCESS
    message: str = "success"


class DestroyRequest(Replyable):
    reason: str = Field(default="destroyed", max_length=MAX_REASON_CHARS)


class MetadataRequest(OwnedRequest):
    """Merge into the session's metadata (or replace it); a None value removes a key."""

    metadata: dict[str, Any]
    replace: bool = False

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _within("metadata", value, MAX_METADATA_BYTES)


class RenameRequest(OwnedRequest):
    name: str = Field(max_length=MAX_NAME_CHARS)


class SetStateRequest(OwnedRequest):
    """Pause (release the instance), mark idle, or resume (optionally from a checkpoint)."""

    state: Literal["active", "idle", "paused"]
    checkpoint_id: str | None = None


class SaveCheckpointRequest(OwnedRequest):
    data: Any = None
    label: str = Field(default="", max_length=MAX_NAME_CHARS)
    request_id: str = _REQUEST_ID


class CheckpointRequest(OwnedRequest):
    """Names one checkpoint (delete), or none (clear all)."""

    checkpoint_id: str | None = None


class AppendRequest(OwnedRequest):
    """A caller's entry in the session's log: a message (role set) or an event of its own kind."""

    kind: str = Field(default="message", min_length=1, max_length=MAX_KIND_CHARS)
    role: str = Field(default="", max_length=MAX_ROLE_CHARS)
    content: Any = None
    message: str = Field(default="", max_length=MAX_MESSAGE_CHARS)


class ForkRequest(OwnedRequest):
    """Start sessions from this one's state. ``children``: their workflow ids (the client names
    them, one per new session); ``from_checkpoint``: start from that checkpoint's snapshot
    instead of the session's state now (a fresh snapshot of its instance)."""

    children: list[Annotated[str, Field(pattern=_ID)]] = Field(min_length=1, max_length=MAX_FORK)
    from_checkpoint: str | None = Field(default=None, max_length=200)
    request_id: str = _REQUEST_ID

    @field_validator("children")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("the children's workflow ids must differ")
        return value


class ForkSource(_Model):
    """What a fork answers: what each child starts from."""

    #: The parent's workflow id (each child's ``parent_session``).
    parent: str
    #: The parent's input with its config, name and metadata as they are now (owner, TTL and
    #: the other options are the children's too).
    input: SessionInput
    #: The backend snapshot the children restore (None: the parent had no state to copy).
    snapshot: dict[str, Any] | None = None


class EventsQuery(_Model):
    start_id: int | None = Field(default=None, ge=1)
    end_id: int | None = Field(default=None, ge=1)
    reverse: bool = False
    kind: str | None = Field(default=None, max_length=MAX_KIND_CHARS)
    limit: int = Field(default=50, ge=1, le=100)


class EventsPage(_Model):
    events: list[SessionEvent]
    has_more: bool
    #: Entries trimmed from the front of the log so far.
    dropped: int = 0


class SessionView(_Model):
    """What `describe` answers: the session as an operator or a client sees it."""

    workflow_id: str
    sandbox_id: str
    resource_type: str
    status: SessionStatus
    session_id: str | None = None
    worker: str | None = None
    created: bool = False
    created_at: datetime | None = None
    deadline: datetime | None = None
    ttl_seconds: float
    call_count: int = 0
    config: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = None
    agent_id: str | None = None
    temporary: bool = False
    tools: list[str] = Field(default_factory=list)
    message: str = ""
    #: Why an ERROR session failed, as a result code (4007, or 4012 for a refused config).
    error_code: int | None = None
    name: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    last_activity: datetime | None = None
    checkpoint_count: int = 0
    on_expire: str = "destroy"
    #: Background processes the session started (``bash:start``), as of its last call.
    processes: list[dict[str, Any]] = Field(default_factory=list)
    #: The session it was forked from (its workflow id), if any.
    parent_session: str | None = None
    idle_suspend_seconds: float | None = None
    auto_resume: bool = True
    #: PAUSED by its idle-suspend time (the next call resumes it).
    suspended: bool = False
