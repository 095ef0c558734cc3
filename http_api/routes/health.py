"""Health and readiness: is the server up, and what it serves (for the caller's user)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from client.workflow_api import SessionQuery
from http_api.access import Api, Who

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "healthy", "timestamp": datetime.now(UTC).isoformat()}


@router.get("/ready")
async def ready(api: Api, who: Who) -> dict[str, Any]:
    """The live sessions (temporary ones not counted) and their sandboxes: the caller's own,
    or everyone's for an admin or a server without keys."""
    user = who.user_id if who.user_id is not None and not who.admin else None
    sandboxes: set[str] = set()
    total = 0
    async for execution in api.sessions.list(SessionQuery(user_id=user, temporary=False)):
        total += 1
        sandboxes.add(execution.id.rsplit(":", 1)[0])  # <sandbox id>:<resource type>
    try:
        tools = len(await api.tools.specs())
    except Exception:
        tools = 0
    return {
        "status": "ready",
        "tools_count": tools,
        "active_workers": len(sandboxes),
        "total_sessions": total,
    }
