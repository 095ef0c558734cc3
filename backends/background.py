"""Background processes of a session: started beside its shell, followed by handle.

Each runs ``bash -c COMMAND`` in a session of its own inside the jail, started by the
jail's supervisor (so a restarted shell, a timeout or an interrupt of the foreground command
spare it; destroy, a lost worker and :meth:`Background.kill` end it). Its stdout and stderr share
one pipe that the worker reads as it comes: the newest ``KEEP_BYTES`` are kept in memory, older
bytes are dropped but still counted, so offsets stay absolute. Reading is paced (``READ_RATE``):
a process that prints without end waits on its pipe instead of keeping a worker core busy.
Its stdin is a pipe that stays open until :meth:`BackgroundProcess.close_input`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal as signals
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backends.input_pipe import InputPipe
from backends.jail import JailedProcess
from backends.jail_control import SpawnRefused

#: Output kept per process (the newest bytes), and how fast a process's output is read at most.
KEEP_BYTES = 1024 * 1024
READ_RATE = 16 * 1024 * 1024
#: Processes running at once, and entries the table keeps (the oldest ended ones go first).
MAX_RUNNING = 16
MAX_ENTRIES = 64
#: What the table shows of a command.
COMMAND_SHOWN = 200
SIGNALS = ("TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "CONT", "STOP")
BASH = shutil.which("bash") or "/bin/bash"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class BackgroundProcess:
    handle: str
    command: str
    started_at: str
    pid: int | None = None
    #: running, exited (its exit code), killed (by a signal: ``exit_code`` is minus its number),
    #: or lost (its jail or worker is gone).
    status: str = "running"
    exit_code: int | None = None
    ended_at: str | None = None
    stdin: InputPipe | None = None
    _ring: bytearray = field(default_factory=bytearray)
    _total: int = 0
    _fd: int | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _ended: asyncio.Event = field(default_factory=asyncio.Event)
    _window: tuple[float, int] = (0.0, 0)
    _resume: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def output_bytes(self) -> int:
        """Bytes of output so far (kept or not): the offset the next output starts at."""
        return self._total

    def entry(self) -> dict[str, Any]:
        """The process table's row: what a snapshot and ``describe`` show."""
        return {
            "handle": self.handle,
            "command": self.command[:COMMAND_SHOWN],
            "status": self.status,
            "exit_code": self.exit_code,
            "pid": self.pid,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    def status_view(self) -> dict[str, Any]:
        return {
            **self.entry(),
            "output_bytes": self._total,
            "stdin_open": self.stdin is not None and not self.stdin.closed,
        }

    def output(self, offset: int, limit: int) -> tuple[bytes, int, int]:
        """Up to ``limit`` bytes from ``offset``: (bytes, the offset they start at, bytes
        dropped before it: asked for but no longer kept)."""
        first = self._total - len(self._ring)
        dropped = max(0, first - offset)
        start = max(offset, first)
        data = bytes(self._ring[start - first : start - first + limit])
        return data, start, dropped

    async def wait_output(self, offset: int, timeout: float) -> None:
        """Until there is output past ``offset``, the process ended, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._total <= offset and self.running and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())

    async def wait_end(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout)
        return not self.running

    # --- the worker's ends ---------------------------------------------------------------------

    def follow(self, fd: int) -> None:
        self._fd = fd
        os.set_blocking(fd, False)
        self._window = (time.monotonic(), 0)
        asyncio.get_running_loop().add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        start, taken = self._window
        now = time.monotonic()
        if now - start >= 1.0:
            start, taken = now, 0
        while taken < READ_RATE:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:  # every writer closed it: the process and what it started ended
                self._stop_reading()
                break
            taken += len(chunk)
            self._total += len(chunk)
            self._ring += chunk
            if len(self._ring) > KEEP_BYTES:
                del self._ring[: len(self._ring) - KEEP_BYTES]
        self._window = (start, taken)
        self._changed.set()
        if taken >= READ_RATE and self._fd is not None:  # pause until the second is over
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._fd)
            self._resume = loop.call_later(max(0.0, start + 1.0 - now), self._again)

    def _again(self) -> None:
        self._resume = None
        if self._fd is not None:
            self._window = (time.monotonic(), 0)
            asyncio.get_running_loop().add_reader(self._fd, self._on_readable)

    def _stop_reading(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def ended(self, status: int | None) -> None:
        """The process ended (``status``: its exit code or minus its signal), or was lost (None)."""
        if not self.running:
            return
        if status is None:
            self.status = "lost"
        else:
            self.status = "exited" if status >= 0 else "killed"
            self.exit_code = status
        self.ended_at = _now()
        if self.stdin is not None:  # nobody reads it any more
            self.stdin.abort()
        self._ended.set()
        self._changed.set()

    def release(self) -> None:
        self._stop_reading()
        if self.stdin is not None:
            self.stdin.abort()


class Background:
    """A session's background processes, by handle (``p1``, ``p2``, ...)."""

    def __init__(self) -> None:
        self._box: JailedProcess | None = None
        self._processes: dict[str, BackgroundProcess] = {}
        self._next = 1

    def attach(self, box: JailedProcess) -> None:
        """A new jail: whatever ran in the one before is gone."""
        for process in self._processes.values():
            if process.running:
                process.ended(None)
            process.release()
        self._box = box
        box.on_event = self._on_event

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "exited":
            process = self._processes.get(str(event.get("handle")))
            if process is not None:
                process.ended(int(event.get("status", -1)))

    async def start(self, command: str, cwd: str, env: dict[str, str]) -> BackgroundProcess:
        box = self._box
        if box is None or not box.alive:
            raise ConnectionError("the session's sandbox has ended")
        running = sum(p.running for p in self._processes.values())
        if running >= MAX_RUNNING:
            raise OverflowError(
                f"{running} background processes run already (at most {MAX_RUNNING}): "
                "end one with bash:kill first"
            )
        if "\0" in command:
            raise ValueError("a command cannot contain a NUL character")
        if not command.strip():
            raise ValueError("the command is empty: there is nothing to start")
        handle = f"p{self._next}"
        argv = [BASH, "--noprofile", "--norc", "-c", command]
        try:
            pid, stdin_w, out_r = await box.spawn_piped(handle, argv, env, cwd)
        except SpawnRefused as exc:  # nothing started: its cwd is no directory it can enter
            raise FileNotFoundError(str(exc)) from None
        self._next += 1
        process = BackgroundProcess(handle, command, _now(), pid=pid)
        process.stdin = InputPipe(stdin_w)
        process.follow(out_r)
        self._processes[handle] = process
        self._trim()
        return process

    def get(self, handle: str) -> BackgroundProcess:
        try:
            return self._processes[handle]
        except KeyError:
            known = ", ".join(self._processes) or "none"
            raise LookupError(f"no background process {handle!r} (known: {known})") from None

    async def kill(self, handle: str, signal: str, grace: float) -> BackgroundProcess:
        """Send ``signal`` to every process of its session; after TERM, what still runs
        ``grace`` seconds later gets KILL."""
        process = self.get(handle)
        if not process.running or self._box is None:
            return process
        number = int(getattr(signals, f"SIG{signal}"))
        await self._box.request("signal", target="background", pid=process.pid, signal=number)
        if signal == "TERM" and not await process.wait_end(grace):
            await self._box.request(
                "signal", target="background", pid=process.pid, signal=int(signals.SIGKILL)
            )
        if signal in ("TERM", "KILL"):
            await process.wait_end(5)
        return process

    def table(self) -> list[dict[str, Any]]:
        return [p.entry() for p in self._processes.values()]

    def load(self, entries: list[dict[str, Any]]) -> None:
        """A restored instance: the table of the one before, whose processes did not come along."""
        for item in entries or []:
            handle = str(item.get("handle", ""))
            if not handle or handle in self._processes:
                continue
            process = BackgroundProcess(
                handle,
                str(item.get("command", "")),
                str(item.get("started_at", "")),
                pid=item.get("pid"),
                status=str(item.get("status", "lost")),
                exit_code=item.get("exit_code"),
                ended_at=item.get("ended_at"),
            )
            if process.status == "running":
                process.status, process.ended_at = "lost", _now()
            self._processes[handle] = process
            number = handle[1:]
            if number.isdigit():
                self._next = max(self._next, int(number) + 1)
        self._trim()

    def _trim(self) -> None:
        for handle in list(self._processes):
            if len(self._processes) <= MAX_ENTRIES:
                break
            if not self._processes[handle].running:
                self._processes.pop(handle).release()

    def close(self) -> None:
        for process in self._processes.values():
            process.release()
