"""What the session and shared-tools workflows share: call options and failure mapping."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

from contract import Envelope, ErrorCode
from contract.limits import MAX_REMEMBERED_DATA_BYTES, MAX_REMEMBERED_RESULTS, json_size

#: A call waits this long for the worker that holds the instance before it is declared lost.
SCHEDULE_TO_START = timedelta(seconds=10)
#: A call not started on its worker this soon asks that worker whether it is alive
#: (``instance_calls.on_its_worker``); it is declared lost only when no answer comes.
PROBE_AFTER = timedelta(seconds=1)
#: How long a live worker has to answer ``alive`` (its own queue and slots: never busy).
ALIVE_WITHIN = timedelta(seconds=1.5)
#: A call on a worker that stops heartbeating for this long is declared lost with its worker.
HEARTBEAT_TIMEOUT = timedelta(seconds=4)

NO_RETRY = RetryPolicy(maximum_attempts=1)
LIFECYCLE_RETRY = RetryPolicy(
    maximum_attempts=3,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=[str(int(c)) for c in ErrorCode if c >= 4000],
)


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
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return str(cause) if cause is not None else str(exc)


def remember(results: dict[str, Envelope], request_id: str, envelope: Envelope) -> None:
    """Keep a request's answer, so a retry is answered, not run; the oldest answers go first.

    A large answer (a file read, say) is kept without its data, so the session's memory and its
    carried state stay bounded: a retry gets its code and a note, not the bytes again.
    """
    size = json_size(envelope.data)
    if size > MAX_REMEMBERED_DATA_BYTES:
        envelope = envelope.model_copy(
            update={
                "data": None,
                "message": f"{envelope.message} (answered before; its data, {size} bytes, "
                "is not kept for repeats: run a new request to read it again)",
            }
        )
    results[request_id] = envelope
    while len(results) > MAX_REMEMBERED_RESULTS:
        results.pop(next(iter(results)))
