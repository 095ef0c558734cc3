"""Timeouts and retry policies of the activities workflows run (sessions and shared tools)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from contract import ErrorCode

#: A call waits this long for the worker that holds the instance before it is declared lost.
SCHEDULE_TO_START = timedelta(seconds=10)
#: A call not started on its worker this soon asks that worker whether it is alive
#: (``instance_activities.on_its_worker``); it is declared lost only when no answer comes.
PROBE_AFTER = timedelta(seconds=1)
#: How long a live worker has to answer ``alive`` (its own queue and slots: never busy).
ALIVE_WITHIN = timedelta(seconds=1.5)
#: A call on a worker that stops heartbeating for this long is declared lost with its worker.
HEARTBEAT_TIMEOUT = timedelta(seconds=4)
#: Creating an instance may pull an image or boot a VM.
INITIALIZE_TIMEOUT = timedelta(seconds=120)

#: Tool calls run once: a repeat is the caller's decision (or the session's, for idempotent tools).
NO_RETRY = RetryPolicy(maximum_attempts=1)
#: Initialize retries a passing failure, never a refusal (codes 4000 and up).
LIFECYCLE_RETRY = RetryPolicy(
    maximum_attempts=3,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=[str(int(c)) for c in ErrorCode if c >= 4000],
)
