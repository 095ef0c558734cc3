"""Tools and warmup: what the workers offer, one tool's schema, and warming backends."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from client.agentflow import tool_info, visible
from contract import ErrorCode
from http_api.access import WARMUP_WORKER, Api, Gate, authenticate
from http_api.answers import answer
from http_api.models import WarmupBody

router = APIRouter(tags=["tools"])
#: Routes that read nothing of the caller still need a valid key (and count in its rate).
_authed = [Depends(authenticate)]


@router.get("/api/v1/tools", dependencies=_authed)
async def list_tools(api: Api, include_hidden: bool = False) -> dict[str, Any]:
    specs = await api.tools.specs()
    tools = [tool_info(s) for s in specs if visible(s, include_hidden)]
    return {"tools": tools, "count": len(tools)}


@router.get("/api/v1/tools/{tool_name}/schema", dependencies=_authed)
async def tool_schema(tool_name: str, api: Api) -> JSONResponse:
    resolved = await api.tools.resolve(tool_name)
    spec = await api.tools.spec(resolved.tool) if resolved.tool else None
    if spec is None:
        body = {
            "status": "error",
            "code": ErrorCode.UNKNOWN_TOOL,
            "message": f"Tool not found: {tool_name}",
        }
        return answer(404, body)
    return answer(200, tool_info(spec))


@router.post("/api/v1/warmup")
async def warmup(gate: Gate, body: WarmupBody | None = None) -> dict[str, Any]:
    names = body.backends if body is not None else None
    worker_id = gate.header_worker() or WARMUP_WORKER
    return await gate.state.warmup(gate.sandbox(worker_id), names)


@router.get("/api/v1/warmup/status", dependencies=_authed)
async def warmup_state(api: Api) -> dict[str, Any]:
    return await api.warmup_status()
