"""Input for a jailed program: bytes written to a pipe or FIFO without ever blocking a call.

asyncio's pipe transport cannot serve here: it takes a readable write end for "the reader went
away", and the FIFO of a command's standard input is opened read-write (so that opening it never
blocks, and it ends when this one descriptor closes), so it is readable whenever it holds data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

#: Input waiting for the program to read it, at most (bytes).
MAX_PENDING = 16 * 1024 * 1024


class InputClosed(Exception):
    """The program no longer reads this input (it closed it or ended), or it was closed."""


class InputPipe:
    """The worker's end of a program's standard input. ``write`` queues and returns at once;
    the bytes go out as the program reads. ``close`` delivers end-of-file after them."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        os.set_blocking(fd, False)
        self._pending = bytearray()
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._watching = False
        self.written = 0

    @property
    def closed(self) -> bool:
        return self._fd is None or self._closing

    @property
    def pending(self) -> int:
        return len(self._pending)

    def write(self, data: bytes) -> None:
        if self.closed:
            raise InputClosed("the input was closed (end of file was sent)")
        if len(self._pending) + len(data) > MAX_PENDING:
            raise InputClosed(
                f"the program has not read {len(self._pending)} bytes of input yet; "
                f"at most {MAX_PENDING} may wait"
            )
        self._pending += data
        self._flush()

    def close(self) -> None:
        """End of file once what is queued went out (or at once, when nothing is)."""
        self._closing = True
        self._flush()

    def abort(self) -> None:
        """Close now, dropping what the program did not read."""
        self._pending.clear()
        self._closing = True
        self._release()

    def _flush(self) -> None:
        while self._pending and self._fd is not None:
            try:
                sent = os.write(self._fd, self._pending[: 1 << 16])
            except BlockingIOError:
                break
            except OSError:  # the reader is gone
                self._pending.clear()
                self._release()
                return
            del self._pending[:sent]
            self.written += sent
        if self._pending and self._fd is not None and not self._watching:
            self._loop.add_writer(self._fd, self._flush)
            self._watching = True
        elif not self._pending:
            if self._watching and self._fd is not None:
                self._loop.remove_writer(self._fd)
                self._watching = False
            if self._closing:
                self._release()

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._watching:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(fd)
            self._watching = False
        with contextlib.suppress(OSError):
            os.close(fd)
