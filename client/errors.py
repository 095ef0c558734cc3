"""Turning Temporal client errors into envelopes: only "cannot reach Temporal" raises."""

from __future__ import annotations

from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from contract import Envelope, EnvelopeMeta, ErrorCode
from contract.limits import SESSION_CLOSING


def error_envelope(code: int, message: str, meta: EnvelopeMeta) -> Envelope:
    return Envelope(code=code, message=message, data=None, meta=meta)


def printable(value: object) -> str:
    """``value`` as text any UTF-8 writer takes: a caller's malformed tool name is echoed in an
    answer's ``meta.tool`` with a lone surrogate spelled ``\\ud800``, not raw."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def code_of(exc: BaseException) -> tuple[int, str]:
    """The envelope code and message for an update that failed or was rejected."""
    if isinstance(exc, WorkflowUpdateRPCTimeoutOrCancelledError):
        return ErrorCode.UNAVAILABLE, "no worker answered in time; is a worker running?"
    # The code travels as the type of the innermost ApplicationError (activity -> workflow).
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    if cause is not None:
        exc = cause
    if isinstance(exc, ApplicationError):
        if exc.type == SESSION_CLOSING:  # still closing after the client's retries
            return ErrorCode.SESSION_CLOSED, exc.message
        try:
            return int(exc.type or ""), exc.message
        except ValueError:
            return ErrorCode.INTERNAL, exc.message
    return ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"


def is_gone(exc: BaseException) -> bool:
    """True when the workflow does not exist or has already completed."""
    return isinstance(exc, RPCError) and exc.status in (
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.FAILED_PRECONDITION,
    )


def never_ran(exc: BaseException) -> bool:
    """True when the server says no run of the workflow exists (never started, or deleted after
    retention), as opposed to one that has completed. Only the server's own words tell them
    apart (both are NOT_FOUND); anything else answers False, the cautious side."""
    return (
        isinstance(exc, RPCError)
        and exc.status == RPCStatusCode.NOT_FOUND
        and exc.message.startswith("workflow not found")
    )


class SessionError(Exception):
    """A SessionManager call refused with an envelope code (permission, quota, not found...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{int(code)}] {message}")
        self.code = int(code)
        self.message = message

    @classmethod
    def of(cls, exc: BaseException) -> SessionError:
        """The error for a failed update, by the code it carries."""
        code, message = code_of(exc)
        return _KINDS.get(code, SessionError)(code, message)


class PermissionDenied(SessionError):
    """The caller's user does not own the session."""


class QuotaExceeded(SessionError):
    """The user is at a limit: sessions per user, checkpoints per session."""


class SessionNotFound(SessionError):
    """No session has this id (never created, or deleted)."""


_KINDS: dict[int, type[SessionError]] = {
    ErrorCode.PERMISSION_DENIED: PermissionDenied,
    ErrorCode.QUOTA_EXCEEDED: QuotaExceeded,
    ErrorCode.NO_SESSION: SessionNotFound,
}
