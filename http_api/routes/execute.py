"""Tool calls: one (``execute``) or several (``execute/batch``), answered as the envelope the
sandbox answered, under its code's status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from http_api.access import Access, Gate
from http_api.answers import answer, http_status
from http_api.caller import own_request_id
from http_api.models import BatchBody, ExecuteBody

router = APIRouter(tags=["execute"])

#: ``X-Strict-Params: true``: undeclared parameters answer 4000 (a body's ``strict_params``
#: wins), for clients that cannot add a body field.
StrictHeader = Annotated[bool | None, Header(alias="X-Strict-Params")]


def call_options(body: ExecuteBody, gate: Access, strict_header: bool | None) -> dict[str, Any]:
    """The keyword arguments of one call's ``Sandbox.execute`` (or ``execute_stream``)."""
    strict = body.strict_params if body.strict_params is not None else strict_header
    return {
        "request_id": own_request_id(gate.who, body.request_id or body.message_id),
        "session_id": body.session_id,
        "trace_id": body.trace_id,
        "strict_params": bool(strict),
        "auto_resume": body.auto_resume,
    }


@router.post("/api/v1/execute")
async def execute(
    body: ExecuteBody, gate: Gate, x_strict_params: StrictHeader = None
) -> JSONResponse:
    sandbox = gate.sandbox(gate.worker(body))
    options = call_options(body, gate, x_strict_params)
    result = await sandbox.execute(body.action, body.params or {}, body.timeout, **options)
    return answer(http_status(result["code"]), result)


@router.post("/api/v1/execute/batch")
async def execute_batch(
    body: BatchBody, gate: Gate, x_strict_params: StrictHeader = None
) -> JSONResponse:
    gate.charge_batch(len(body.actions))
    sandbox = gate.sandbox(gate.worker(body))
    actions = [
        {**a, "request_id": own_request_id(gate.who, a["request_id"])} if a.get("request_id") else a
        for a in body.actions
    ]
    strict = body.strict_params if body.strict_params is not None else x_strict_params
    result = await sandbox.execute_batch(
        actions, body.parallel, body.stop_on_error, trace_id=body.trace_id, strict_params=strict
    )
    return answer(http_status(result["code"]), result)
