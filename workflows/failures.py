"""Failures inside workflow code: a refusal with an envelope code, and what a failed activity
means (its worker lost, or the message a caller reads)."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType


class Rejected(ApplicationError):
    """A request refused with an envelope code; raised by validators, caught by handlers."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message, {"code": int(code)}, type=str(int(code)), non_retryable=True)
        self.code = int(code)


def worker_lost(exc: ActivityError) -> bool:
    """A timeout while waiting for, or running on, a pinned worker means the worker is gone."""
    cause = exc.cause
    return isinstance(cause, TimeoutError) and cause.type in (
        TimeoutType.SCHEDULE_TO_START,
        TimeoutType.HEARTBEAT,
        TimeoutType.START_TO_CLOSE,
    )


def describe_failure(exc: BaseException) -> str:
    """The innermost cause's message: what actually went wrong, for the caller's envelope."""
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause) if cause is not None else str(exc)
