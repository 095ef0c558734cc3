"""Sessions: create, destroy, list, refresh, reinitialize (AgentFlow's), describe and events
(ours). Making and ending a session goes through :class:`http_api.sessions.SandboxSessions`,
where the key's jail policy and session quota apply."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from client import SessionError
from contract import ErrorCode, EventsQuery
from http_api.access import Gate
from http_api.answers import (
    ApiError,
    answer,
    coded,
    http_status,
    ok,
    session_envelope,
    session_failure,
)
from http_api.inputs import checked_resource
from http_api.models import (
    CreateBody,
    EventsBody,
    RefreshBody,
    ReinitializeBody,
    SessionBody,
    WorkerBody,
)
from http_api.owners import check_read
from http_api.sessions import Opened, SandboxSessions

router = APIRouter(tags=["sessions"])


@router.post("/api/v1/session/create")
async def create_session(body: CreateBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    resource_type = checked_resource(body.resource_type)
    config = dict(body.session_config or {})
    if body.custom_name:
        config["custom_name"] = body.custom_name
    opened = await sessions.create(
        resource_type,
        config,
        body.ttl,
        idle_suspend_seconds=body.idle_suspend_seconds,
        auto_resume=body.auto_resume,
    )
    return opened_answer(opened, resource_type, "session:create", started)


def opened_answer(opened: Opened, resource_type: str, tool: str, started: float) -> JSONResponse:
    """A creation's answer (session/create, init/resource): 200, or AgentFlow's 500 for a
    session that failed to start (a refusal keeps its own status)."""
    data: dict[str, Any] = {
        "session_id": opened.session_id,
        "session_name": opened.session_name,
        "resource_type": resource_type,
        "session_status": opened.session_status,
        "error": opened.error,
        "created": opened.created,
        "session": opened.view,
    }
    if opened.ok and not opened.created:
        data["status"] = "exists"
    if opened.ok:
        return ok(data, tool, started, opened.session_id)
    code = opened.code
    message = "Session creation failed: " + str(opened.message or opened.error)
    status = 500 if code == ErrorCode.NO_SESSION else http_status(code)
    return answer(status, session_envelope(code, message, data, tool, started, opened.session_id))


@router.post("/api/v1/session/destroy")
async def destroy_session(body: SessionBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    resource_type = checked_resource(body.resource_type)
    done = await sessions.destroy(resource_type)
    if done.view is None:
        return session_failure(done.code, done.error, "session:destroy", started)
    data = {
        "message": f"Session destroyed for {resource_type}",
        "session_id": done.session_id,
        "session_name": done.session_name,
        "resource_type": resource_type,
        "session": done.view,
    }
    return ok(data, "session:destroy", started, done.session_id)


@router.post("/api/v1/session/list")
async def list_sessions(body: WorkerBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    listed = await sessions.listed()
    data = {"worker_id": sessions.worker_id, "sessions": listed, "count": len(listed)}
    return ok(data, "session:list", started)


@router.post("/api/v1/session/refresh")
async def refresh_session(body: RefreshBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    if body.resource_type:
        return await _refresh_one(sessions, checked_resource(body.resource_type), body, started)
    count, details = await sessions.refresh_all(body.ttl)
    data = {
        "message": f"Refreshed {count} sessions",
        "worker_id": sessions.worker_id,
        "refreshed_count": count,
        "details": details,
    }
    return ok(data, "session:refresh", started)


async def _refresh_one(
    sessions: SandboxSessions, resource_type: str, body: RefreshBody, started: float
) -> JSONResponse:
    done = await sessions.refresh(resource_type, body.ttl)
    if done.view is None:
        return session_failure(done.code, done.error, "session:refresh", started)
    data = {
        "message": f"Session refreshed for {resource_type}",
        "resource_type": resource_type,
        "session_id": done.session_id,
        "expires_at": done.expires_at,
        "session": done.view,
    }
    return ok(data, "session:refresh", started, done.session_id)


@router.post("/api/v1/session/reinitialize")
async def reinitialize(body: ReinitializeBody, gate: Gate) -> JSONResponse:
    """Ours: a new instance from a new config in the same session (AgentFlow's client does
    destroy + create instead, which works too)."""
    started = time.perf_counter()
    sessions = gate.sessions(body)
    resource_type = checked_resource(body.resource_type)
    done = await sessions.reinitialize(resource_type, body.config)
    return coded(
        done.code, done.message, done.answer, "session:reinitialize", started, done.session_id
    )


@router.post("/api/v1/session/describe")
async def describe(body: SessionBody, gate: Gate) -> JSONResponse:
    """Ours: one session's whole view (state, instance, deadline, calls, owner)."""
    started = time.perf_counter()
    resource_type = checked_resource(body.resource_type)
    view = await gate.sessions(body).find(resource_type)
    if view is None:
        message = f"No session found for {resource_type}"
        return session_failure(ErrorCode.NO_SESSION, message, "session:describe", started)
    check_read(gate.who, view)
    return ok({"session": view.model_dump(mode="json")}, "session:describe", started)


@router.post("/api/v1/session/events")
async def events(body: EventsBody, gate: Gate) -> JSONResponse:
    """Ours: a page of a session's event log."""
    started = time.perf_counter()
    resource_type = checked_resource(body.resource_type)
    sessions = gate.sessions(body)
    view = await sessions.find(resource_type)
    if view is not None:  # none: the query below answers "no session"
        check_read(gate.who, view)
    try:
        query = EventsQuery(
            **body.model_dump(include={"start_id", "end_id", "reverse", "kind", "limit"})
        )
        page = await sessions.events(resource_type, query)
    except ValueError as exc:  # a query out of range (pydantic's ValidationError)
        raise ApiError(400, ErrorCode.INVALID_INPUT, str(exc)) from None
    except SessionError:
        raise
    except Exception:  # the query found no session (gone, never made)
        message = f"No session found for {resource_type}"
        return session_failure(ErrorCode.NO_SESSION, message, "session:events", started)
    return ok(page.model_dump(mode="json"), "session:events", started)
