"""Live output of one streaming call: what its tool prints, published to its session's stream.

The backend's output capture hands bytes to :meth:`LiveOutput.write` as they arrive (through
``backends.capture.live_sink``, set for the call's task only). They are batched: the first bytes
after a quiet spell go at once, later ones at most every ``batch_spacing`` seconds, one chunk per
stream per batch, each batch one signal to the session workflow (``WorkflowStreamClient``: its
publisher id and sequence make a retried batch land once). A call publishes at most
``MAX_BATCHES_PER_CALL`` batches, so however chatty, it adds a bounded number of events to history.

Live output never fails the call it shows: a batch that cannot be sent is logged and dropped.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import contextvars
import logging
import time
from datetime import UTC, datetime
from typing import Any

from temporalio.contrib.workflow_streams import WorkflowStreamClient

from backends.capture import live_sink
from contract import OutputChunk, output_topic
from contract.output import MAX_CHUNK_CHARS, batch_spacing

log = logging.getLogger(__name__)

#: The most a call waits, at its end, for its last batch to reach the session.
CLOSE_TIMEOUT = 10.0
#: After this many failed sends in a row a call stops publishing (its answer still comes).
MAX_FAILURES = 3


class LiveOutput:
    """Batches one call's output and publishes it on the call's topic."""

    def __init__(self, stream: WorkflowStreamClient, request_id: str) -> None:
        self._stream = stream
        self._request_id = request_id
        self._topic = stream.topic(output_topic(request_id), type=OutputChunk)
        self._pending: dict[str, bytearray] = {}
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self._since: datetime | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._batches = 0
        self._last = -1e9
        self._failures = 0
        self._muted = False
        self._runner = asyncio.create_task(self._run())
        self._closing: asyncio.Future[None] | None = None

    @classmethod
    def for_activity(cls, request_id: str) -> LiveOutput:
        """Publishing to the workflow that scheduled the running activity."""
        return cls(WorkflowStreamClient.from_within_activity(), request_id)

    def context(self) -> contextvars.Context:
        """A copy of the current context whose tasks send their output here."""
        context = contextvars.copy_context()
        context.run(live_sink.set, self.write)
        return context

    def follow(self, call: asyncio.Future[Any]) -> None:
        """Close when ``call`` ends, however it ends (a cancelled activity too)."""
        call.add_done_callback(lambda _: self.close())

    def write(self, stream: str, data: bytes) -> None:
        """Bytes the tool printed on ``stream``; called by the output capture as they arrive."""
        if self._closing is not None or self._muted:
            return
        self._pending.setdefault(stream, bytearray()).extend(data)
        if self._since is None:
            self._since = datetime.now(UTC)
        self._wake.set()

    def close(self) -> asyncio.Future[None]:
        """Send what is left and stop; the same future for every caller (await it)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        return self._closing

    async def _close(self) -> None:
        # The runner finishes the batch it is sending (not cancelled mid-signal), then sends the
        # rest at once; the answer waits at most CLOSE_TIMEOUT for it.
        self._stop.set()
        self._wake.set()
        await asyncio.wait({self._runner}, timeout=CLOSE_TIMEOUT)
        if not self._runner.done():
            log.warning("live output of %s: last batch not sent in time", self._request_id)
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            spacing = batch_spacing(self._batches)
            delay = self._last + spacing - time.monotonic() if spacing is not None else 0.0
            if delay > 0 and not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            self._wake.clear()
            stopping = self._stop.is_set()
            await self._send(final=stopping)
            if stopping:
                with contextlib.suppress(Exception):
                    await self._stream.flush()  # a batch whose send failed before, once more
                return

    async def _send(self, *, final: bool) -> None:
        chunks = self._take(final=final)
        if not chunks or self._muted:
            return
        if batch_spacing(self._batches) is None:
            self._mute(f"live output stopped after {self._batches} batches (the bound per call)")
        else:
            for chunk in chunks:
                self._topic.publish(chunk)
            self._batches += 1
            self._last = time.monotonic()
        try:
            await self._stream.flush()
            self._failures = 0
        except Exception as exc:
            self._failures += 1
            log.warning("live output of %s: batch not sent: %s", self._request_id, exc)
            if self._failures >= MAX_FAILURES:
                self._muted = True

    def _mute(self, why: str) -> None:
        """Publish no more output: one note says why; the answer has all of it."""
        self._topic.publish(
            OutputChunk(
                request_id=self._request_id,
                kind="note",
                text=f"{why}; the rest comes with the answer",
                at=datetime.now(UTC),
            )
        )
        self._muted = True

    def _take(self, *, final: bool) -> list[OutputChunk]:
        """The pending bytes as chunks (one per stream, split when long); emptied."""
        since, self._since = self._since, None
        chunks: list[OutputChunk] = []
        for stream, data in self._pending.items():
            decoder = self._decoders.setdefault(
                stream, codecs.getincrementaldecoder("utf-8")(errors="replace")
            )
            # A character cut at the batch's end waits for the next batch.
            text = decoder.decode(bytes(data), final=final)
            data.clear()
            for start in range(0, len(text), MAX_CHUNK_CHARS):
                chunks.append(
                    OutputChunk(
                        request_id=self._request_id,
                        stream=stream,
                        text=text[start : start + MAX_CHUNK_CHARS],
                        at=since,
                    )
                )
        return chunks
