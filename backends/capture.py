"""Output of a jailed program, bounded in memory and never written to disk.

A program's stdout or stderr is a pipe that the worker reads. During a call the first
``max_output_bytes`` are kept; the rest is read and dropped (spliced to /dev/null, counted), so a
command that prints without end fills neither the answer, nor the worker's memory, nor its disk.
A command that outlives its call (bash's ``no_output_timeout``) keeps being read the same way
until it ends: each later call takes what was kept since the one before (:meth:`take`).
Between commands the pipe is not read: a background writer blocks once the pipe is full,
costing nothing, and what it left there is dropped when the next command begins.

Live output: a call that streams sets :data:`live_sink` for its task; a capture that begins a call
in that task hands every kept byte to the sink too, as it arrives, until the call's answer is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

#: One read or splice moves at most this much.
CHUNK = 1 << 20
#: Past the cap, output is dropped at most this fast; a runaway writer then waits on the pipe
#: instead of keeping a worker core busy (bytes per second).
DROP_RATE = 64 * 1024 * 1024
#: What a call's final drain, or the drop of stale output, reads at most.
DRAIN_LIMIT = 16 * 1024 * 1024

#: Where a streaming call's output goes as it arrives: ``sink(stream name, bytes)``.
OutputSink = Callable[[str, bytes], None]
#: The sink of the call running in this task (set by the activity of a streaming call).
live_sink: ContextVar[OutputSink | None] = ContextVar("live_sink", default=None)


@dataclass
class Captured:
    data: bytes
    total: int

    @property
    def dropped(self) -> int:
        return self.total - len(self.data)

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[... output truncated: {self.dropped} of {self.total} bytes not shown ...]"
        return text


class OutputCapture:
    """Reads one pipe (the worker's end, ``fd``) call by call; keeps at most ``limit`` bytes.

    ``on_data`` is called whenever bytes arrived (kept or dropped): a sign of life. ``name`` is
    the stream's name for live output (``stdout``, ``stderr``; ``output`` when not told).
    """

    def __init__(
        self,
        fd: int,
        limit: int,
        on_data: Callable[[], None] | None = None,
        *,
        name: str = "output",
    ) -> None:
        self._fd = fd
        self._limit = limit
        self._on_data = on_data
        self._name = name
        self._sink: OutputSink | None = None
        os.set_blocking(fd, False)
        self._null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        self._buffer = bytearray()
        self._total = 0
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._eof = False
        self._window = (0.0, 0)  # (start, bytes dropped since)
        self._resume: asyncio.TimerHandle | None = None

    def begin(self) -> None:
        """Start a call: drop what arrived since the last one, then keep reading."""
        self._consume(DRAIN_LIMIT, keep=False)
        self._buffer.clear()
        self._total = 0
        self._window = (time.monotonic(), 0)
        self._sink = live_sink.get()  # the calling task's: this call's live output, if it streams
        self._watch(True)

    def take(self) -> Captured:
        """What was kept since :meth:`begin` or the last take; reading goes on (the call that
        began it is answered: its live output ends here)."""
        self._consume(DRAIN_LIMIT, keep=True)
        self._sink = None
        captured = Captured(bytes(self._buffer), self._total)
        self._buffer.clear()
        self._total = 0
        return captured

    def end(self) -> Captured:
        """End a call: read what is already in the pipe, stop reading, answer what was kept."""
        self._watch(False)
        return self.take()

    def close(self) -> None:
        self._watch(False)
        for fd in (self._fd, self._null):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _watch(self, on: bool) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if on and not self._reading and not self._eof:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        elif not on and self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _on_readable(self) -> None:
        if self._consume(CHUNK, keep=True) and self._on_data is not None:
            self._on_data()
        if self._eof:
            self._watch(False)
            return
        start, dropped = self._window
        now = time.monotonic()
        if now - start >= 1.0:
            self._window = (now, 0)
        elif dropped >= DROP_RATE:  # pause until the second is over
            self._watch(False)
            self._resume = self._loop.call_later(start + 1.0 - now, self._watch, True)

    def _consume(self, budget: int, *, keep: bool) -> int:
        """Read up to ``budget`` bytes that are ready now; keep them up to the cap. Answers how
        many bytes were read."""
        asked = budget
        while budget > 0 and not self._eof:
            room = self._limit - len(self._buffer) if keep else 0
            try:
                if room > 0:
                    data = os.read(self._fd, min(room, CHUNK, budget))
                    self._buffer += data
                    moved = len(data)
                    if data and self._sink is not None:
                        self._publish(data)
                else:
                    moved = _drop(self._fd, self._null, min(CHUNK, budget))
                    start, dropped = self._window
                    self._window = (start, dropped + moved)
            except BlockingIOError:
                break
            except OSError:
                moved = 0
            if moved == 0:
                self._eof = True  # the jail is gone: every writer closed the pipe
                break
            if keep:
                self._total += moved
            budget -= moved
        return asked - budget

    def _publish(self, data: bytes) -> None:
        """Hand kept bytes to the live sink; live output never breaks the call it shows."""
        assert self._sink is not None
        try:
            self._sink(self._name, data)
        except Exception:
            self._sink = None


def _drop(fd: int, null: int, count: int) -> int:
    """Move bytes from a pipe to /dev/null without copying them through Python."""
    try:
        return os.splice(fd, null, count, flags=os.SPLICE_F_NONBLOCK)
    except (AttributeError, OSError) as exc:
        if isinstance(exc, BlockingIOError):
            raise
        return len(os.read(fd, count))
