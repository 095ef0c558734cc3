"""How one Sandbox's tool calls reach the session workflows straight through Temporal.

A call runs in the sandbox's session of its tool's resource type, in the sandbox's shared-tools
workflow for a shared tool, or in a one-call temporary session when the sandbox has no live
session of that type (unless that session expired or failed: its state is gone, so the caller is
told, see ``Sandbox(after_expiry=...)``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace as otel_trace
from pydantic import ValidationError
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError

from client.catalog import ToolCatalog
from client.engine import SandboxIdentity
from client.errors import SessionError, error_envelope
from client.transport import QUERY_TIMEOUT, SessionGone, call_timeout
from client.workflow_api import SessionWorkflows
from contract import (
    Envelope,
    EnvelopeMeta,
    ErrorCode,
    ExecuteRequest,
    SessionInput,
    SessionStatus,
    session_workflow_id,
    split_tool_name,
    temporary_workflow_id,
)
from contract.limits import MAX_TOOL_TIMEOUT, number_problem, timeout_problem
from runtime.telemetry import span


def trace_id_of(current: otel_trace.Span) -> str:
    """The call's OpenTelemetry trace id when tracing records, else a new id."""
    context = current.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else uuid.uuid4().hex


def _dumped(code: int, message: str, meta: EnvelopeMeta) -> dict[str, Any]:
    return error_envelope(code, message, meta).model_dump(mode="json")


class ToolCalls:
    """The calls of one Sandbox: its identity, the gateway, its tool catalog and the resource
    types it knows to be shared (learnt from warmup or from a first answer)."""

    def __init__(
        self,
        owner: SandboxIdentity,
        workflows: Callable[[], SessionWorkflows],
        tools: ToolCatalog,
        shared: set[str],
    ) -> None:
        self.owner = owner
        self._workflows = workflows
        self.tools = tools
        self.shared = shared

    async def call(
        self,
        action: str,
        params: dict[str, Any],
        timeout: float | None,
        *,
        request_id: str,
        session_id: str | None,
        trace_id: str | None,
        stream: bool = False,
        strict_params: bool = False,
        auto_resume: bool | None = None,
    ) -> dict[str, Any]:
        """Run a checked call in a span; always an envelope dict, ``meta.trace_id`` set.
        ``strict_params``: a parameter the tool does not declare answers 4000 (else it is
        dropped and named in ``meta.ignored_params``)."""
        attributes = {
            "session.tool": action,
            "session.sandbox_id": self.owner.sandbox_id,
            "session.request_id": request_id,
            "session.trace_id": trace_id,
        }
        with span(f"execute {action}", attributes) as current:
            result = await self._resolved(
                action, params, timeout, request_id, session_id, stream, strict_params, auto_resume
            )
            current.set_attribute("session.result_code", result["code"])
            if result["meta"].get("session_id"):
                current.set_attribute("session.id", result["meta"]["session_id"])
            result["meta"]["trace_id"] = trace_id or trace_id_of(current)
            return result

    async def stream_target(self, action: str) -> str | None:
        """The workflow whose stream carries a call's live output: the sandbox's session of the
        tool's resource type (None for a shared tool, or a name that does not resolve)."""
        if ":" not in action:
            try:
                action = (await self.tools.resolve(action)).tool or ""
            except Exception:
                return None
        resource_type = action.partition(":")[0]
        if not resource_type or resource_type in self.shared:
            return None
        return session_workflow_id(self.owner.sandbox_id, resource_type)

    async def _resolved(
        self,
        action: str,
        params: dict[str, Any],
        timeout: float | None,
        request_id: str,
        session_id: str | None,
        stream: bool,
        strict_params: bool = False,
        auto_resume: bool | None = None,
    ) -> dict[str, Any]:
        """The call with its tool name read and AgentFlow's ``timeout`` applied: the call's
        ``timeout`` parameter, which a tool that has one keeps and the worker enforces for one
        that has not (it cancels the call there: ``activities/call_deadline.py``)."""
        meta = EnvelopeMeta(tool=action, request_id=request_id, session_id=session_id)
        if ":" not in action:
            try:
                resolved = await self.tools.resolve(action)
            except Exception as exc:
                message = f"cannot list the tools to read {action!r} (is a worker running?): {exc}"
                return _dumped(ErrorCode.UNAVAILABLE, message, meta)
            if resolved.tool is None:
                answer = error_envelope(resolved.code, resolved.message, meta)
                answer.data = resolved.data
                return answer.model_dump(mode="json")
            action = resolved.tool
        if timeout is not None:
            problem = number_problem("timeout", timeout, MAX_TOOL_TIMEOUT)
            if problem is not None:
                wrong = isinstance(timeout, bool) or not isinstance(timeout, int | float)
                code = ErrorCode.WRONG_TYPE if wrong else ErrorCode.INVALID_INPUT
                return _dumped(code, f"{action}: {problem}", meta)
            params.setdefault("timeout", timeout)
        return await self._any(
            action, params, request_id, session_id, stream, strict_params, auto_resume
        )

    async def _any(
        self,
        action: str,
        params: Mapping[str, Any] | None,
        request_id: str,
        session_id: str | None,
        stream: bool = False,
        strict_params: bool = False,
        auto_resume: bool | None = None,
    ) -> dict[str, Any]:
        """The call where it runs: a shared tool's workflow, or the sandbox's session."""
        meta = EnvelopeMeta(tool=action, request_id=request_id, session_id=session_id)
        try:
            resource_type, _ = split_tool_name(action)
            req = ExecuteRequest(
                tool=action,
                params=dict(params or {}),
                request_id=request_id,
                session_id=session_id,
                user_id=self.owner.user_id,
                admin=self.owner.admin,
                stream=stream,
                strict_params=strict_params,
                auto_resume=auto_resume,
            )
            timeout = timeout_problem(req.params)
            if timeout is not None:
                code, problem = timeout
                return _dumped(code, f"{action}: {problem}", meta)
        except ValidationError as exc:  # params not JSON values, ids or sizes out of range
            return _dumped(ErrorCode.INVALID_INPUT, str(exc), meta)
        except (ValueError, TypeError) as exc:
            code = ErrorCode.UNKNOWN_TOOL if "tool name" in str(exc) else ErrorCode.INVALID_INPUT
            return _dumped(code, str(exc), meta)
        meta.resource_type = resource_type
        if resource_type in self.shared:
            envelope = await self._shared(req, meta)
        else:
            envelope = await self._in_session(resource_type, req, meta)
            if envelope.meta.shared:
                self.shared.add(resource_type)
        return envelope.model_dump(mode="json")

    async def _shared(self, req: ExecuteRequest, meta: EnvelopeMeta) -> Envelope:
        try:
            return await self._workflows().execute_shared(self.owner.sandbox_id, req)
        except SessionError as exc:
            return error_envelope(exc.code, exc.message, meta)

    async def _in_session(
        self, resource_type: str, req: ExecuteRequest, meta: EnvelopeMeta
    ) -> Envelope:
        workflow_id = session_workflow_id(self.owner.sandbox_id, resource_type)
        try:
            return await self._workflows().execute(workflow_id, req)
        except SessionGone as exc:
            if req.session_id is not None:
                return error_envelope(
                    ErrorCode.NO_SESSION,
                    f"no live {resource_type} session {req.session_id!r} "
                    f"in sandbox {self.owner.sandbox_id}",
                    meta,
                )
            # No session ever ran here: nothing ended to explain (one round trip less).
            ended_run = not exc.never_ran
        except SessionError as exc:
            if exc.code != ErrorCode.SESSION_CLOSED or req.session_id is not None:
                return error_envelope(exc.code, exc.message, meta)
            ended_run = True
        ask = ended_run and self.owner.after_expiry == "error"
        ended = await self._ended_by_itself(workflow_id) if ask else None
        if ended is not None:
            return error_envelope(ErrorCode.SESSION_CLOSED, ended, meta)
        # No live session and none pinned: the call runs in a temporary one.
        return await self._temporary(resource_type, req, meta)

    async def _ended_by_itself(self, workflow_id: str) -> str | None:
        """Why the session ended, when it expired or failed (its state is gone: a temporary
        session would answer as if nothing happened); None when it never existed, was
        destroyed, or is closing."""
        workflows = self._workflows()
        try:
            described = await workflows.execution(workflow_id)
            if described.status in (None, WorkflowExecutionStatus.RUNNING):
                return None
            summary = await workflows.summary(workflow_id, rpc_timeout=QUERY_TIMEOUT)
        except Exception:  # never existed, deleted, or not a session's result
            return None
        if summary.status not in (SessionStatus.EXPIRED, SessionStatus.ERROR):
            return None
        when = f" at {described.close_time:%Y-%m-%d %H:%M:%S} UTC" if described.close_time else ""
        return (
            f"session {workflow_id} {summary.status.value}{when} ({summary.reason}); its state "
            "is gone. Create a new session, or use Sandbox(after_expiry='temporary') to run "
            "calls in temporary sessions instead"
        )

    async def _temporary(
        self, resource_type: str, req: ExecuteRequest, meta: EnvelopeMeta
    ) -> Envelope:
        # A resource type the workers' tool list (when this client has a fresh one) does not
        # have is answered here: a temporary session would only start to answer the same.
        offered = self.tools.resource_types()
        if offered is not None and resource_type not in offered:
            message = (
                f"unknown tool {req.tool!r}: no worker offers resource type {resource_type!r} "
                f"(offered: {', '.join(sorted(offered)) or 'none'})"
            )
            return error_envelope(ErrorCode.UNKNOWN_TOOL, message, meta)
        owner = self.owner
        workflow_id = temporary_workflow_id(owner.sandbox_id, resource_type, req.request_id)
        inp = SessionInput(
            sandbox_id=owner.sandbox_id,
            resource_type=resource_type,
            ttl_seconds=max(owner.session_ttl, call_timeout(req.params).total_seconds()),
            temporary=True,
            user_id=owner.user_id,
            agent_id=owner.agent_id,
        )
        summary = f"temporary {resource_type} session of sandbox {owner.sandbox_id}"
        workflows = self._workflows()
        try:
            return await workflows.execute_temporary(
                inp, req, workflow_id=workflow_id, summary=summary
            )
        except WorkflowAlreadyStartedError:
            # A retry after the temporary session ended: its answer, not a second run.
            ended = await workflows.summary(workflow_id)
            if ended.last_envelope is not None:
                return ended.last_envelope
            return error_envelope(
                ErrorCode.INTERNAL, "temporary session ended with no answer", meta
            )
        except SessionError as exc:
            return error_envelope(exc.code, exc.message, meta)
