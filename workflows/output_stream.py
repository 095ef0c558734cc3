"""The session's live output: one workflow stream that streaming calls publish to.

A call sent with ``stream`` runs as a regular activity (a local one would hold the workflow task
that takes the stream's signals and polls) and publishes what it prints, batched, from the worker
(``activities.live_output``). The session marks each streaming call's end on the call's topic once
it is answered, after everything the call published: a reader that sees ``end`` has seen it all.

Readers poll by long-poll updates; those handlers never finish on their own, so the session
detaches them before it waits for its handlers (continue-as-new, close); they follow the chain to
the next run, where the newest items are carried (bounded, ``contract.output``) with their offsets.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.contrib.workflow_streams import WorkflowStream, WorkflowStreamState

from contract import Envelope, OutputChunk, output_topic
from contract.output import RETAINED_BYTES, RETAINED_ITEMS


class SessionOutput:
    """The workflow's stream (made in ``@workflow.init``), its end marks and its bounds."""

    def __init__(self, stream: WorkflowStream) -> None:
        self._stream = stream

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
