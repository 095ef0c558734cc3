"""The workflow side of the session activities: their names, their inputs, and how workflow code
calls them.

An agent workflow (OpenAI Agents SDK, pydantic-ai, or plain Temporal) reaches a session through
activities the user registers on their own worker (``integrations.activities``). Each activity
derives its request id from the calling workflow's id, run id and activity id, so a retried
activity is answered once by the session instead of running the tool again.

This module is safe to import from workflow code: it loads no client, worker or backend code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from contract import Envelope, ToolSpec, split_tool_name
from contract.limits import ID_PATTERN, TOOL_TIMEOUT_MARGIN, tool_timeout

EXECUTE = "durable_sessions.execute"
CREATE_SESSION = "durable_sessions.create_session"
DESTROY_SESSION = "durable_sessions.destroy_session"
LIST_TOOLS = "durable_sessions.list_tools"

#: Beyond a tool's own timeout: the worker, the session, and the round trips around them.
ACTIVITY_SLACK = timedelta(seconds=90)


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ToolCall(_Input):
    """One tool call on a sandbox's session (the ``execute`` activity's input)."""

    sandbox_id: str = Field(pattern=ID_PATTERN.pattern)
    tool: str = Field(max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    #: Config of the session when this call has to open it; an open session keeps its own.
    config: dict[str, Any] = Field(default_factory=dict)
    #: Open the session when it is not live (else the call runs in a one-call temporary session).
    open_session: bool = True
    session_ttl: float | None = None
    user_id: str | None = None
    #: Pins the call to one instance of the session (4007 when it is gone).
    session_id: str | None = None
    #: Default: derived from the calling workflow's id, run id and activity id.
    request_id: str | None = Field(default=None, max_length=200)


class SessionRequest(_Input):
    """Create or destroy one session of a sandbox (``create_session`` / ``destroy_session``)."""

    sandbox_id: str = Field(pattern=ID_PATTERN.pattern)
    resource_type: str = Field(max_length=64)
    config: dict[str, Any] = Field(default_factory=dict)
    session_ttl: float | None = None
    user_id: str | None = None


class ListToolsRequest(_Input):
    """Which backends' tools to list (``list_tools``); None lists every installed backend's."""

    resource_types: list[str] | None = None


@dataclass(frozen=True)
class SessionOptions:
    """How an agent workflow's tools reach their sessions.

    Args:
        sandbox_id: The sandbox whose sessions the tools use; default derived from the calling
            workflow's id (``sandbox_id_for_workflow``), so each agent run has its own.
        configs: Session config per resource type, used when a call opens the session.
        user_id: The owner named on every request.
        session_ttl: Seconds an idle session lives (default the sessions' own, 300).
        task_queue: The queue of the worker that registered the session activities; default
            the workflow's own.
        start_to_close_timeout: Bound of one activity attempt; default the tool's own timeout
            plus ``ACTIVITY_SLACK``.
        retry_policy: Retries of the activities (safe: a retried call is answered once).
        heartbeat_timeout: An ``execute`` attempt whose worker stops heartbeating this long is
            retried (elsewhere) without waiting for its start-to-close timeout.
    """

    sandbox_id: str | None = None
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    user_id: str | None = None
    session_ttl: float | None = None
    task_queue: str | None = None
    start_to_close_timeout: timedelta | None = None
    retry_policy: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            initial_interval=timedelta(seconds=1), maximum_attempts=5
        )
    )
    heartbeat_timeout: timedelta | None = timedelta(seconds=30)

    def sandbox(self) -> str:
        return self.sandbox_id or sandbox_id_for_workflow()


def sandbox_id_for_workflow(workflow_id: str | None = None) -> str:
    """A sandbox id made from a workflow id (the current workflow's by default): the id itself
    when it is a valid sandbox id, else its valid characters with a hash of the whole."""
    wid = workflow_id if workflow_id is not None else workflow.info().workflow_id
    if ID_PATTERN.match(wid):
        return wid
    digest = hashlib.sha256(wid.encode()).hexdigest()[:16]
    return f"{re.sub(r'[^A-Za-z0-9._@:-]', '-', wid)[:180]}-{digest}"


def tool_alias(name: str) -> str:
    """The name a model sees for a tool: ``bash:run`` -> ``bash_run`` (model APIs and MCP
    refuse ``:`` in tool names)."""
    resource, action = split_tool_name(name)
    return f"{resource}_{action}"


def aliases(specs: Sequence[ToolSpec]) -> dict[str, ToolSpec]:
    """Each spec by its alias; ValueError when two tools would share one."""
    found: dict[str, ToolSpec] = {}
    for spec in specs:
        alias = tool_alias(spec.name)
        if alias in found and found[alias].name != spec.name:
            raise ValueError(f"tools {found[alias].name!r} and {spec.name!r} share alias {alias!r}")
        found[alias] = spec
    return found


def model_answer(envelope: Envelope) -> dict[str, Any]:
    """What a model is shown of an envelope: its code, message and data (not the ids)."""
    return {"code": envelope.code, "message": envelope.message, "data": envelope.data}


# --- calls from workflow code --------------------------------------------------------------------


def _timeout(options: SessionOptions, params: Mapping[str, Any] | None = None) -> timedelta:
    if options.start_to_close_timeout is not None:
        return options.start_to_close_timeout
    seconds = tool_timeout(dict(params or {})) + TOOL_TIMEOUT_MARGIN
    return timedelta(seconds=seconds) + ACTIVITY_SLACK


async def execute(
    tool: str, params: Mapping[str, Any] | None = None, options: SessionOptions | None = None
) -> Envelope:
    """Run ``tool`` on the workflow's sandbox (opening its session when needed); from workflow
    code only. Always answers with an envelope; an activity that keeps failing raises."""
    options = options or SessionOptions()
    resource, _ = split_tool_name(tool)
    call = ToolCall(
        sandbox_id=options.sandbox(),
        tool=tool,
        params=dict(params or {}),
        config=dict(options.configs.get(resource, {})),
        session_ttl=options.session_ttl,
        user_id=options.user_id,
    )
    return await workflow.execute_activity(
        EXECUTE,
        call,
        result_type=Envelope,
        task_queue=options.task_queue,
        start_to_close_timeout=_timeout(options, call.params),
        heartbeat_timeout=options.heartbeat_timeout,
        retry_policy=options.retry_policy,
        summary=f"{tool} in {call.sandbox_id}",
    )


async def list_tools(
    resource_types: Sequence[str] | None = None, options: SessionOptions | None = None
) -> list[ToolSpec]:
    """The tools of these backends (every installed backend's when None), from workflow code."""
    options = options or SessionOptions()
    return await workflow.execute_activity(
        LIST_TOOLS,
        ListToolsRequest(resource_types=list(resource_types) if resource_types else None),
        result_type=list[ToolSpec],
        task_queue=options.task_queue,
        start_to_close_timeout=ACTIVITY_SLACK,
        retry_policy=options.retry_policy,
    )


async def create_session(
    resource_type: str, options: SessionOptions | None = None
) -> dict[str, Any]:
    """Open the sandbox's session of ``resource_type`` (an open one answers "exists")."""
    options = options or SessionOptions()
    return await workflow.execute_activity(
        CREATE_SESSION,
        _session_request(resource_type, options),
        result_type=dict[str, Any],
        task_queue=options.task_queue,
        start_to_close_timeout=ACTIVITY_SLACK * 2,
        retry_policy=options.retry_policy,
    )


async def destroy_session(
    resource_type: str, options: SessionOptions | None = None
) -> dict[str, Any]:
    """Destroy the sandbox's session of ``resource_type`` (idempotent)."""
    options = options or SessionOptions()
    return await workflow.execute_activity(
        DESTROY_SESSION,
        _session_request(resource_type, options),
        result_type=dict[str, Any],
        task_queue=options.task_queue,
        start_to_close_timeout=ACTIVITY_SLACK * 2,
        retry_policy=options.retry_policy,
    )


def _session_request(resource_type: str, options: SessionOptions) -> SessionRequest:
    return SessionRequest(
        sandbox_id=options.sandbox(),
        resource_type=resource_type,
        config=dict(options.configs.get(resource_type, {})),
        session_ttl=options.session_ttl,
        user_id=options.user_id,
    )
