"""Fork (ours, issue 26): N new sessions from one of the caller's sessions, each in a sandbox of
its own (its ``worker_id``), owned by the same user and counted in the key's session quota.
Made through :meth:`http_api.sessions.SandboxSessions.fork`; see docs/fork-and-suspend.md."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from contract import ErrorCode
from contract.requests import MAX_FORK
from http_api.access import Gate
from http_api.answers import ApiError, ok
from http_api.inputs import checked_resource
from http_api.models import SessionBody, Ttl

router = APIRouter(tags=["sessions"])


class ForkBody(SessionBody):
    n: int = Field(default=1, description=f"how many sessions to make, 1..{MAX_FORK}")
    from_checkpoint: str | None = Field(
        default=None, description="start from this checkpoint's snapshot, not the state now"
    )
    ttl: Ttl = Field(default=None, description="the children's TTL (default: the parent's)")


@router.post("/api/v1/session/fork")
async def fork_session(body: ForkBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    resource_type = checked_resource(body.resource_type)
    if not 1 <= body.n <= MAX_FORK:
        raise ApiError(
            400, ErrorCode.INVALID_INPUT, f"a fork makes 1 to {MAX_FORK} sessions (n={body.n})"
        )
    views = await sessions.fork(resource_type, body.n, body.from_checkpoint, body.ttl)
    children = [
        {
            "worker_id": v.sandbox_id,
            "resource_type": resource_type,
            "session_id": v.session_id,
            "workflow_id": v.workflow_id,
            "session": v.model_dump(mode="json"),
        }
        for v in views
    ]
    data = {
        "parent": {"worker_id": sessions.worker_id, "resource_type": resource_type},
        "children": children,
        "count": len(children),
    }
    return ok(data, "session:fork", started)
