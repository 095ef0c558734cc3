"""What a route answers: AgentFlow's envelope under AgentFlow's status rule, in one place.

Status codes follow AgentFlow's: 200 for code 0; 400 for the other 4xxx codes of an execute;
500 for 5xxx (207 for a partly failed batch); 404 when destroy or refresh finds no session.
What AgentFlow lacks: 401 (no valid key, 4011), 403 (another user's session, 4012), 429 (a
limit, 4013, with ``Retry-After``), 413 (a body over the limit, 4009), 422 (a body that does not
fit: 4003 missing field, 4004 wrong type), 503 (no worker answered, 5015). Every error body is an
envelope ``{code, message, data, meta}``; nothing answers a traceback.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from client.agentflow import envelope
from contract import ErrorCode

#: Envelope codes whose HTTP status is not AgentFlow's 4xxx -> 400, 5xxx -> 500 rule.
_SPECIAL_STATUS: dict[int, int] = {
    ErrorCode.SUCCESS: 200,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.QUOTA_EXCEEDED: 429,
    ErrorCode.PARTIAL_FAILURE: 207,
    ErrorCode.UNAVAILABLE: 503,
}


class ApiError(Exception):
    """An answer that is an error: HTTP status, envelope code, message, headers."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = int(code)
        self.message = message
        self.data = data
        self.headers = headers or {}


def http_status(code: int) -> int:
    """The HTTP status of an envelope code (AgentFlow's rule, plus our additions)."""
    if code in _SPECIAL_STATUS:
        return _SPECIAL_STATUS[code]
    return 400 if 4000 <= code < 5000 else 500


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


def error_answer(exc: ApiError) -> JSONResponse:
    body = envelope(exc.code, exc.message, exc.data, tool="")
    return answer(exc.status, body, exc.headers)


def session_envelope(
    code: int,
    message: str,
    data: Any,
    tool: str,
    started: float,
    session_id: str | None = None,
) -> dict[str, Any]:
    """The envelope of a session route (``meta.resource_type`` is ``session``, AgentFlow's)."""
    return envelope(
        code, message, data, tool=tool, started=started, resource_type="session",
        session_id=session_id,
    )  # fmt: skip


def ok(data: Any, tool: str, started: float, session_id: str | None = None) -> JSONResponse:
    """200 with a session route's success envelope."""
    return answer(
        200, session_envelope(ErrorCode.SUCCESS, "success", data, tool, started, session_id)
    )


def coded(
    code: int,
    message: str,
    data: Any,
    tool: str,
    started: float,
    session_id: str | None = None,
) -> JSONResponse:
    """A session route's envelope under the status its code has."""
    body = session_envelope(code, message, data, tool, started, session_id)
    return answer(http_status(code), body)


def session_failure(code: int, message: str, tool: str, started: float) -> JSONResponse:
    """No session (404, AgentFlow's), or a refusal with its own status."""
    status = 404 if code == ErrorCode.NO_SESSION else http_status(code)
    return answer(status, session_envelope(code, message, None, tool, started))
