"""The session's live output: one workflow stream that streaming calls publish to.

A call sent with ``stream`` runs as a regular activity (a local one would hold the workflow task
that takes the stream's signals and polls) and publishes what it prints, batched, from the worker
(``activities.live_output``). The session marks each streaming call's end on the call's topic once
it is answered, after everything the call published: a reader that sees ``end`` has seen it all.

Readers poll by long-poll updates. Each waiting poll holds one of the server's in-flight updates
of the session (10 by default), which its calls and its destroy need too, and a reader that gave
up leaves its poll waiting. So a session takes at most ``MAX_WAITING_POLLS`` at once (the next
is refused, clearly), and a poll with nothing to read answers empty after ``POLL_WAIT`` (the
reader polls again; a gone one frees its place). The session detaches waiting polls before it
waits for its handlers (continue-as-new, close); they follow the chain to the next run, where
the newest items are carried (bounded, ``contract.output``) with their offsets.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.contrib.workflow_streams import WorkflowStream, WorkflowStreamState
from temporalio.contrib.workflow_streams._types import PollInput, PollResult
from temporalio.exceptions import ApplicationError

from contract import Envelope, ErrorCode, OutputChunk, output_topic
from contract.output import RETAINED_BYTES, RETAINED_ITEMS

#: The stream's long-poll update (``temporalio.contrib.workflow_streams``), wrapped here.
POLL_UPDATE = "__temporal_workflow_stream_poll"
#: Polls a session lets wait at once: watchers and streaming calls' readers together.
MAX_WAITING_POLLS = 5
#: A poll with nothing new answers empty after this long.
POLL_WAIT = timedelta(seconds=15)


class SessionOutput:
    """The workflow's stream (made in ``@workflow.init``), its end marks and its bounds."""

    def __init__(self, stream: WorkflowStream) -> None:
        self._stream = stream
        self._waiting = 0
        # Replaces the stream's own poll handler (registered by its constructor just before).
        workflow.set_update_handler(POLL_UPDATE, self._poll, validator=self._validate_poll)

    def _validate_poll(self, payload: PollInput) -> None:
        offset = payload.from_offset
        end = self._end()
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise _refused(f"from_offset must be a whole number >= 0, not {offset!r}")
        if offset > end:
            raise _refused(f"from_offset {offset} is past the end of the session's output ({end})")
        if self._waiting >= MAX_WAITING_POLLS:
            raise _too_many()
        self._stream._validate_poll(payload)  # refuses polls while detached (continue-as-new)

    async def _poll(self, payload: PollInput) -> PollResult:
        if self._waiting >= MAX_WAITING_POLLS:  # validated together, in one activation
            raise _too_many()
        self._waiting += 1
        try:
            try:
                await workflow.wait_condition(
                    lambda: self._has_news(payload.from_offset),
                    timeout=POLL_WAIT,
                    timeout_summary="watcher's poll",
                )
            except TimeoutError:
                return self._stream._collect_batch(payload)  # nothing new: answer empty
            return await self._stream._on_poll(payload)  # ready: answers at once
        finally:
            self._waiting -= 1

    def _has_news(self, offset: int) -> bool:
        s = self._stream
        return offset < s._base_offset or self._end() > offset or s._detaching

    def _end(self) -> int:
        return self._stream._base_offset + len(self._stream._log)

    def ended(self, request_id: str, envelope: Envelope) -> None:
        """Mark a streaming call's end on its topic, then keep the stream within its bounds."""
        end = OutputChunk(
            request_id=request_id,
            kind="end",
            at=workflow.now(),
            code=envelope.code,
            message=envelope.message[:1000],
        )
        self._stream.topic(output_topic(request_id), type=OutputChunk).publish(end)
        self.trim()

    def trim(self) -> None:
        """Drop the oldest items beyond ``RETAINED_ITEMS`` or ``RETAINED_BYTES`` (encoded)."""
        state = self._stream.get_state()
        kept = size = 0
        for item in reversed(state.log):
            size += len(item.data) + len(item.topic)
            if kept >= RETAINED_ITEMS or size > RETAINED_BYTES:
                break
            kept += 1
        dropped = len(state.log) - kept
        if dropped:
            self._stream.truncate(state.base_offset + dropped)

    def detach(self) -> None:
        """Answer waiting readers now and refuse new polls on this run (they retry on the next)."""
        self._stream.detach_pollers()

    def carried(self) -> WorkflowStreamState:
        """What the next run starts from: the newest items, the offsets, recent publishers."""
        self.trim()
        return self._stream.get_state()


def _refused(message: str) -> ApplicationError:
    code = int(ErrorCode.INVALID_INPUT)
    return ApplicationError(message, {"code": code}, type=str(code), non_retryable=True)


def _too_many() -> ApplicationError:
    return ApplicationError(
        f"this session has {MAX_WAITING_POLLS} readers of its output waiting already; "
        "stop one (or wait for a streaming call to end) and watch again",
        {"code": int(ErrorCode.QUOTA_EXCEEDED)},
        type=str(int(ErrorCode.QUOTA_EXCEEDED)),
        non_retryable=True,
    )
