"""Tools and warmup: what the workers offer, one tool's schema, and warming backends."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from client.agentflow import tool_info, visible
from client.catalog import session_tools
from contract import ErrorCode, ToolSpec
from contract.limits import ID_PATTERN
from http_api.access import WARMUP_WORKER, Access, Api, Gate, authenticate
from http_api.answers import answer
from http_api.models import WarmupBody

router = APIRouter(tags=["tools"])
#: Routes that read nothing of the caller still need a valid key (and count in its rate).
_authed = [Depends(authenticate)]


@router.get("/api/v1/tools")
async def list_tools(
    gate: Gate, include_hidden: bool = False, worker_id: str | None = None
) -> dict[str, Any]:
    """Every tool the workers offer; with a sandbox (``X-Worker-ID`` or ``worker_id``), also
    the tools its live sessions offer of their own (an mcp session's ``mcp:<server>.<tool>``)."""
    specs = await gate.state.tools.specs()
    specs += await _sandbox_tools(gate, worker_id, {s.name for s in specs})
    tools = [tool_info(s) for s in specs if visible(s, include_hidden)]
    return {"tools": tools, "count": len(tools)}


@router.get("/api/v1/tools/{tool_name}/schema")
async def tool_schema(tool_name: str, gate: Gate, worker_id: str | None = None) -> JSONResponse:
    resolved = await gate.state.tools.resolve(tool_name)
    spec = await gate.state.tools.spec(resolved.tool) if resolved.tool else None
    if spec is None and resolved.tool:
        own = await _sandbox_tools(gate, worker_id, set())
        spec = next((s for s in own if s.name == resolved.tool), None)
    if spec is None:
        body = {
            "status": "error",
            "code": ErrorCode.UNKNOWN_TOOL,
            "message": f"Tool not found: {tool_name}",
        }
        return answer(404, body)
    return answer(200, tool_info(spec))


async def _sandbox_tools(gate: Access, worker_id: str | None, known: set[str]) -> list[ToolSpec]:
    sandbox_id = worker_id if worker_id and ID_PATTERN.match(worker_id) else gate.header_worker()
    if sandbox_id is None:
        return []
    sandbox = gate.sandbox(sandbox_id)
    return await session_tools(sandbox.describe_session, sandbox.execute, known)


@router.post("/api/v1/warmup")
async def warmup(gate: Gate, body: WarmupBody | None = None) -> dict[str, Any]:
    names = body.backends if body is not None else None
    worker_id = gate.header_worker() or WARMUP_WORKER
    return await gate.state.warmup(gate.sandbox(worker_id), names)


@router.get("/api/v1/warmup/status", dependencies=_authed)
async def warmup_state(api: Api) -> dict[str, Any]:
    return await api.warmup_status()
