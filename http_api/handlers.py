"""How failures become answers: a refused request, a body that does not fit, an unknown route,
a session's refusal, an unreachable Temporal, and anything unexpected (the code, never a
traceback)."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from client import SessionError
from client.agentflow import envelope
from contract import ErrorCode
from http_api.answers import ApiError, answer, error_answer, http_status
from http_api.models import OUT_OF_RANGE

log = logging.getLogger("durable-sessions.http")


def install(app: FastAPI) -> None:
    """Answer every failure of ``app``'s routes with an envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_answer(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = ErrorCode.INVALID_INPUT if exc.status_code < 500 else ErrorCode.INTERNAL
        body = {**envelope(code, str(exc.detail), None, tool="http"), "detail": exc.detail}
        return answer(exc.status_code, body, dict(exc.headers or {}))

    @app.exception_handler(SessionError)
    async def _session_error(request: Request, exc: SessionError) -> JSONResponse:
        return answer(http_status(exc.code), envelope(exc.code, exc.message, None, tool="http"))

    @app.exception_handler(RPCError)
    async def _temporal_error(request: Request, exc: RPCError) -> JSONResponse:
        log.warning("%s %s: Temporal refused: %s", request.method, request.url.path, exc)
        message = f"Temporal did not answer ({exc.status.name})"
        return answer(503, envelope(ErrorCode.UNAVAILABLE, message, None, tool="http"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The server's log has the traceback (uvicorn logs it); the caller gets the code only.
        message = f"internal error ({type(exc).__name__})"
        return answer(500, envelope(ErrorCode.INTERNAL, message, None, tool="http"))


def too_large(limit: int) -> bytes:
    """The 413 answer's body (code 4009), for runtime.body_limit.BodyLimit."""
    body = envelope(
        ErrorCode.TOO_LARGE,
        f"request body over the limit of {limit} bytes",
        {"limit_bytes": limit},
        tool="http",
    )
    return json.dumps(body).encode()


def validation_answer(exc: RequestValidationError) -> JSONResponse:
    """A body that is not JSON (400, 4000), misses fields (422, 4003), has a number out of its
    range (400, 4000) or a value of the wrong type (422, 4004)."""
    errors = exc.errors()
    kinds = {str(e.get("type", "")) for e in errors}
    if "json_invalid" in kinds:
        code, status = ErrorCode.INVALID_INPUT, 400
        message = "the body is not valid JSON"
    elif kinds and all(k == "missing" for k in kinds):
        code, status = ErrorCode.MISSING_FIELD, 422
        message = "missing field " + ", ".join(_where(e) for e in errors)
    elif kinds == {OUT_OF_RANGE}:  # a number of the right type, out of its range
        code, status = ErrorCode.INVALID_INPUT, 400
        message = "; ".join(str(e.get("msg", "")) for e in errors[:5])
    else:
        code, status = ErrorCode.WRONG_TYPE, 422
        message = "; ".join(f"{_where(e)}: {e.get('msg', '')}" for e in errors[:5])
    problems = [
        {"field": _where(e), "type": e.get("type"), "message": e.get("msg")} for e in errors[:20]
    ]
    body = envelope(code, message, {"errors": problems}, tool="http")
    return answer(status, body)


def _where(error: Any) -> str:
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    return ".".join(loc) or "body"
