"""Tool calls: one (``execute``) or several (``execute/batch``), answered as the envelope the
sandbox answered, under its code's status."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from http_api.access import Gate
from http_api.answers import answer, http_status
from http_api.caller import own_request_id
from http_api.models import BatchBody, ExecuteBody

router = APIRouter(tags=["execute"])


@router.post("/api/v1/execute")
async def execute(body: ExecuteBody, gate: Gate) -> JSONResponse:
    sandbox = gate.sandbox(gate.worker(body))
    result = await sandbox.execute(
        body.action,
        body.params or {},
        body.timeout,
        request_id=own_request_id(gate.who, body.request_id or body.message_id),
        session_id=body.session_id,
        trace_id=body.trace_id,
    )
    return answer(http_status(result["code"]), result)


@router.post("/api/v1/execute/batch")
async def execute_batch(body: BatchBody, gate: Gate) -> JSONResponse:
    gate.charge_batch(len(body.actions))
    sandbox = gate.sandbox(gate.worker(body))
    actions = [
        {**a, "request_id": own_request_id(gate.who, a["request_id"])} if a.get("request_id") else a
        for a in body.actions
    ]
    result = await sandbox.execute_batch(
        actions, body.parallel, body.stop_on_error, trace_id=body.trace_id
    )
    return answer(http_status(result["code"]), result)
