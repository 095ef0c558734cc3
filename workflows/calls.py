"""What the session and shared-tools workflows share: call options and failure mapping."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

from contract import Envelope, ErrorCode

#: A call waits this long for the worker that holds the instance before it is declared lost.
SCHEDULE_TO_START = timedelta(seconds=10)
#: A call on a worker that stops heartbeating for this long is declared lost with its worker.
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
#: Added to a tool's own timeout, so the backend reports its timeout before Temporal does.
TOOL_TIMEOUT_MARGIN = 30.0
DEFAULT_TOOL_TIMEOUT = 300.0
MAX_EVENTS = 1000
#: The event log's budget for callers' content; the oldest entries go first.
MAX_LOG_BYTES = 512 * 1024
#: One appended entry (message or event) at most.
MAX_ENTRY_BYTES = 32 * 1024
MAX_CHECKPOINTS = 20
MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_REMEMBERED_RESULTS = 256

NO_RETRY = RetryPolicy(maximum_attempts=1)
LIFECYCLE_RETRY = RetryPolicy(
    maximum_attempts=3,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=[str(int(c)) for c in ErrorCode if c >= 4000],
)


#: Type of the rejection a session answers while it drains for continue-as-new; clients retry.
CONTINUING_AS_NEW = "ContinuingAsNew"


class Rejected(ApplicationError):
    """A request refused with an envelope code; raised by validators, caught by handlers."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message, {"code": int(code)}, type=str(int(code)), non_retryable=True)
        self.code = int(code)


def tool_timeout(params: dict[str, Any]) -> float:
    value = params.get("timeout")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_TOOL_TIMEOUT


def worker_lost(exc: ActivityError) -> bool:
    """A timeout while waiting for, or running on, a pinned worker means the worker is gone."""
    cause = exc.cause
    return isinstance(cause, TimeoutError) and cause.type in (
        TimeoutType.SCHEDULE_TO_START,
        TimeoutType.HEARTBEAT,
        TimeoutType.START_TO_CLOSE,
    )


def describe_failure(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause) if cause is not None else str(exc)


def json_size(value: Any) -> int:
    """Bytes of a value as compact JSON: what a size limit is measured on."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def remember(results: dict[str, Envelope], request_id: str, envelope: Envelope) -> None:
    """Keep a request's answer, so a retry is answered, not run; the oldest answers go first."""
    results[request_id] = envelope
    while len(results) > MAX_REMEMBERED_RESULTS:
        results.pop(next(iter(results)))
