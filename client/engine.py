"""What a Sandbox's engine offers: the same calls straight to Temporal (``TemporalEngine``) or
over HTTP to our server (``HttpEngine``), so ``Sandbox`` picks one engine once.

Both answer the same dicts: a session's view with AgentFlow's ``status`` for ``open``, an
envelope for ``execute``, a view for ``refresh`` and ``destroy``. ``client.agentflow`` builds the
shapes; the HTTP server builds its answers with the same functions, so both engines agree.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from client.agentflow import merged_params, open_refused
from client.errors import SessionError, error_envelope, printable
from client.transport import call_problem
from contract import EnvelopeMeta, ErrorCode


class SandboxIdentity(Protocol):
    """Who a Sandbox acts for and how its sessions live (``Sandbox`` is one)."""

    sandbox_id: str
    user_id: str | None
    agent_id: str | None
    metadata: dict[str, Any]
    admin: bool
    session_ttl: float
    task_queue: str
    after_expiry: Literal["error", "temporary"]
    #: Seconds an HTTP request may take at least.
    timeout: float
    #: Refuse parameters a tool does not declare (4000) instead of dropping them.
    strict_params: bool


class Engine(Protocol):
    """One transport for every call a Sandbox makes."""

    #: Resource types whose sessions this engine opened (destroyed on ``async with`` exit).
    created: set[str]

    @property
    def connected(self) -> bool: ...
    @property
    def client(self) -> Client: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def open(
        self,
        resource_type: str,
        config: dict[str, Any],
        name: str,
        ttl: float | None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]: ...
    async def fork(
        self, resource_type: str, n: int, from_checkpoint: str | None, ttl: float | None
    ) -> list[dict[str, Any]]: ...
    async def execute(
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
    ) -> dict[str, Any]: ...
    async def execute_batch(
        self, items: list[dict[str, Any]], parallel: bool, stop_on_error: bool, trace_id: str
    ) -> dict[str, Any]: ...
    async def stream_target(self, action: str) -> str | None: ...
    async def refresh(self, resource_type: str, ttl: float | None) -> dict[str, Any]: ...
    async def reinitialize(
        self, resource_type: str, config: dict[str, Any], name: str
    ) -> dict[str, Any]: ...
    async def destroy(self, resource_type: str) -> dict[str, Any]: ...
    async def describe(self, resource_type: str) -> dict[str, Any] | None: ...
    async def events(self, resource_type: str, query: dict[str, Any]) -> dict[str, Any]: ...
    async def list_sessions(self) -> list[dict[str, Any]]: ...
    async def warmup(self, names: list[str] | None) -> dict[str, Any]: ...
    async def warmup_status(self) -> dict[str, Any]: ...
    async def tools(self, include_hidden: bool) -> list[dict[str, Any]]: ...
    async def tool_schema(self, tool_name: str) -> dict[str, Any] | None: ...
    async def status(self) -> dict[str, Any]: ...


async def open_checked(
    engine: Engine,
    sandbox_id: str,
    resource_type: str,
    config: Mapping[str, Any],
    name: str,
    ttl: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``engine.open``, where a refusal (permission, bad input) is an answer, not an exception;
    no worker answering (UNAVAILABLE) still raises. ``options``: the session's
    ``idle_suspend_seconds`` and ``auto_resume`` (when not None)."""
    try:
        return await engine.open(resource_type, dict(config), name, ttl, options)
    except SessionError as exc:
        if exc.code == ErrorCode.UNAVAILABLE:
            raise
        code, message = exc.code, exc.message
    except (ValidationError, ValueError) as exc:
        code, message = ErrorCode.INVALID_INPUT, str(exc)
    return open_refused(resource_type, sandbox_id, name, code, message)


def refused(
    action: Any, problem: str, request_id: str, session_id: str | None, trace_id: str | None
) -> dict[str, Any]:
    """The envelope of a call refused before anything was sent (``call_problem``)."""
    meta = EnvelopeMeta(tool=printable(action), request_id=request_id, session_id=session_id)
    answer = error_envelope(ErrorCode.INVALID_INPUT, problem, meta).model_dump(mode="json")
    answer["meta"]["trace_id"] = trace_id or uuid.uuid4().hex
    return answer


async def send_call(
    engine: Engine,
    action: str,
    params: Mapping[str, Any] | None,
    timeout: float | None,
    extra: Mapping[str, Any],
    request_id: str,
    session_id: str | None,
    trace_id: str | None,
    *,
    stream: bool = False,
    strict_params: bool = False,
    auto_resume: bool | None = None,
) -> dict[str, Any]:
    """A call, refused here when it cannot be sent as it is (``call_problem``)."""
    problem = call_problem(action, params, extra)
    if problem is not None:
        return refused(action, problem, request_id, session_id, trace_id)
    return await engine.execute(
        action,
        merged_params(params, extra),
        timeout,
        request_id=request_id,
        session_id=session_id,
        trace_id=trace_id,
        stream=stream,
        strict_params=strict_params,
        auto_resume=auto_resume,
    )


async def each_type(
    types: list[str],
    call: Callable[[str], Awaitable[dict[str, Any]]],
    *,
    rpc_refusals: bool = False,
    settled: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[int, str]]]:
    """``call`` for each resource type, in order: the answers, and the (code, message) of each
    refused one (``rpc_refusals``: a refused RPC too, as NO_SESSION); ``settled`` is told each
    type answered or refused. No worker answering in time (UNAVAILABLE) raises: it says
    nothing about whether the session exists."""
    done: dict[str, dict[str, Any]] = {}
    failed: dict[str, tuple[int, str]] = {}
    for rt in types:
        try:
            done[rt] = await call(rt)
        except SessionError as exc:
            if exc.code == ErrorCode.UNAVAILABLE:
                raise
            failed[rt] = (exc.code, exc.message)
        except RPCError as exc:
            if not rpc_refusals:
                raise
            failed[rt] = (ErrorCode.NO_SESSION, str(exc))
        if settled is not None:
            settled(rt)
    return done, failed
