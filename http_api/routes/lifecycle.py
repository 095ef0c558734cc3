"""A sandbox's life: heartbeat, status, disconnect (its sessions destroyed), and the server's
shutdown call (the server serves every user, so only the caller's sessions end)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from http_api.access import Gate
from http_api.answers import answer, ok
from http_api.models import ShutdownBody, WorkerBody

router = APIRouter(tags=["lifecycle"])
server = APIRouter(tags=["server"])


@router.post("/api/v1/lifecycle/heartbeat")
async def heartbeat(body: WorkerBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    data = {
        "worker_id": sessions.worker_id,
        "active_sessions": await sessions.active(),
        "timestamp": datetime.now(UTC).isoformat(),
    }
    return ok(data, "session:heartbeat", started)


@router.post("/api/v1/lifecycle/status")
async def status(body: WorkerBody, gate: Gate) -> JSONResponse:
    return answer(200, await gate.sessions(body).status())


@router.post("/api/v1/worker/disconnect")
async def disconnect(body: WorkerBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    data = {"worker_id": sessions.worker_id, "sessions_cleaned": await sessions.destroy_all()}
    return ok(data, "session:disconnect", started)


@server.post("/api/v1/server/shutdown")
async def shutdown(gate: Gate, body: ShutdownBody | None = None) -> dict[str, Any]:
    """The server serves every user, so it keeps running: this destroys the sessions of the
    caller's sandbox (``X-Worker-ID``) when ``cleanup_sessions``."""
    cleaned = 0
    worker_id = gate.header_worker()
    if (body is None or body.cleanup_sessions) and worker_id:
        cleaned = await gate.at(worker_id).destroy_all()
    return {
        "status": "success",
        "message": "sessions cleaned; the server keeps running for other callers",
        "sessions_cleaned": cleaned,
    }
