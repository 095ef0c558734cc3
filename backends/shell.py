"""A persistent bash process, in its session's jail, that runs one command at a time."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from backends.capture import OutputCapture
from backends.input_pipe import InputClosed, InputPipe
from backends.jail import JailedProcess
from backends.process_config import ProcessConfig
from backends.shell_protocol import (
    BASH,
    FDS,
    REPORT_LIMIT,
    TRAP,
    VOLATILE,
    CommandResult,
    ShellStateError,
    parse_report,
    restore_script,
    script,
    snapshot_of,
)

__all__ = ["BASH", "CommandResult", "Shell", "ShellStateError"]


@dataclass
class _Command:
    """The command in the foreground: started by one call, followed by later ones."""

    token: str
    deadline: float
    quiet: float | None
    done: asyncio.Future[CommandResult]
    stdin: InputPipe | None = None
    fifo: str | None = None
    #: Set to end the command now (an interrupt the command ignored).
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: The watcher is ending the command: its output belongs to the final answer.
    finishing: bool = False
    interrupted: bool = False
    watcher: asyncio.Task[None] | None = None


class Shell:
    """One bash process, started by its jail's supervisor.

    Each command is sourced from a here-document (so a syntax error stays inside it) with its
    stdout and stderr on pipes the worker reads (bounded, see :mod:`backends.capture`), then the
    shell reports on its own stdout, framed by a per-command random token: the exit code, the
    working directory and ``export -p`` (the exported variables). A shell killed on timeout or that
    exited is started afresh in the same jail (its files stay) and brought back to where it was;
    a shell re-created on another worker comes back from the same snapshot.

    A command started with a ``no_output_timeout`` may outlive its call: the call answers with the
    output so far once the command was quiet that long, and the command goes on (watched until its
    own deadline) with a FIFO as its standard input, for later calls to write, close or interrupt.
    Without one, its standard input is /dev/null and the call waits for its end, as always.

    ``on_jail`` is awaited with every new jail the shell starts in (the first one too): the
    place to restore files into a jail made anew, and to follow its events.
    """

    def __init__(
        self,
        settings: ProcessConfig,
        on_jail: Callable[[JailedProcess], Awaitable[None]] | None = None,
    ) -> None:
        self.cwd = settings.cwd
        self._settings = settings
        self._env = settings.env
        self._max = settings.max_output_bytes
        self._on_jail = on_jail
        self._exported: dict[str, str] | None = None
        self._box: JailedProcess | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._reports: asyncio.StreamReader | None = None
        self._pending = b""
        self._out: OutputCapture | None = None
        self._err: OutputCapture | None = None
        self._lock = asyncio.Lock()
        self._fg: _Command | None = None
        self._activity = asyncio.Event()
        self._last_output = 0.0

    @property
    def pid(self) -> int | None:
        """The host pid of the jail that holds the shell."""
        return self._box.pid if self._box else None

    @property
    def max_output_bytes(self) -> int:
        return self._max

    @property
    def box(self) -> JailedProcess | None:
        """The jail the shell runs in now (a new one after the old one was lost)."""
        return self._box

    @property
    def running(self) -> bool:
        """Is a command running (started by an earlier call and not collected yet)?"""
        return self._fg is not None and not self._fg.done.done()

    def environment(self) -> dict[str, str]:
        """The exported variables as of the last command's end (what a new process gets)."""
        if self._exported is None:
            return dict(self._env)
        return {k: v for k, v in self._exported.items() if k not in VOLATILE}

    async def start(self) -> None:
        box = JailedProcess(self._settings.jail, env=self._env, cwd=self._settings.cwd, fds=FDS)
        await box.start([BASH, "--noprofile", "--norc"])
        self._box = box
        self._stdin = await box.writer(0)
        self._reports = await box.reader(1)
        self._pending = b""
        self._out = OutputCapture(box.end(3), self._max, self._saw_output, name="stdout")
        self._err = OutputCapture(box.end(4), self._max, self._saw_output, name="stderr")
        await self._internal(TRAP)  # a shell that cannot run says so now
        if self._on_jail is not None:
            await self._on_jail(box)

    def _saw_output(self) -> None:
        self._last_output = time.monotonic()
        self._activity.set()

    # --- the calls --------------------------------------------------------------------------------

    async def run(
        self, command: str, timeout: float, no_output_timeout: float | None = None
    ) -> CommandResult:
        """Start a command; answer at its end, or (``no_output_timeout``) once it is quiet."""
        if "\0" in command:
            raise ValueError("a command cannot contain a NUL character")
        async with self._lock:
            if self.running:
                raise ShellStateError(
                    "a command is still running: collect its output with an empty command, "
                    "send it input (bash:stdin) or interrupt it (bash:interrupt) first"
                )
            uncollected, self._fg = self._fg, None
            lost = False
            if self._box is None or not self._box.alive:
                await self._renew()
                lost = True
            command_ = await self._begin(command, timeout, no_output_timeout)
        result = await self._follow(command_, None, no_output_timeout)
        result.jail_lost = lost
        ended_before = uncollected.done if uncollected is not None else None
        if (
            ended_before is not None
            and ended_before.done()
            and not ended_before.cancelled()
            and ended_before.exception() is None
        ):
            ended = ended_before.result()
            result.notes.append(
                f"the previous command had ended (return code {ended.return_code}) before its "
                "last output was collected; that output was dropped"
            )
        return result

    async def resume(self, wait: float, no_output_timeout: float | None = None) -> CommandResult:
        """More of the running command: until it ends, is quiet, or ``wait`` seconds passed."""
        command = self._current()
        return await self._follow(command, time.monotonic() + wait, no_output_timeout)

    async def send_input(
        self, data: bytes, eof: bool, wait: float, no_output_timeout: float | None = None
    ) -> CommandResult:
        """Write to the running command's standard input (then end it, ``eof``); answer what
        follows, as :meth:`resume` does."""
        command = self._current()
        if command.stdin is None:
            raise ShellStateError(
                "the running command has no input: only a command started with "
                "no_output_timeout reads from bash:stdin"
            )
        if command.done.done():
            result = self._finish(command)
            result.notes.append("the command had ended before the input was sent")
            return result
        try:
            if data:
                command.stdin.write(data)
            if eof:
                command.stdin.close()
        except InputClosed as exc:
            raise ShellStateError(str(exc)) from None
        return await self._follow(command, time.monotonic() + wait, no_output_timeout)

    async def interrupt(self, grace: float) -> CommandResult:
        """Ctrl-C to the running command; one still running ``grace`` seconds later is ended
        like one past its timeout (every process of the command; the shell restarted where it
        was; files and background processes kept)."""
        command = self._current()
        if not command.done.done() and not command.finishing and self._box is not None:
            command.interrupted = True
            with contextlib.suppress(ConnectionError, TimeoutError, RuntimeError):
                await self._box.request("signal", target="program", signal=int(signal.SIGINT))
            try:
                await asyncio.wait_for(asyncio.shield(command.done), grace)
            except TimeoutError:
                command.stop.set()
        await asyncio.shield(command.done)
        return self._finish(command)

    def _current(self) -> _Command:
        if self._fg is None:
            raise ShellStateError("no command is running")
        return self._fg

    # --- one command ------------------------------------------------------------------------------

    async def _begin(self, command: str, timeout: float, quiet: float | None) -> _Command:
        assert self._box and self._stdin and self._out and self._err
        stdin: InputPipe | None = None
        fifo: str | None = None
        if quiet is not None:  # the call may end before the command: give it an input
            answer, fds = await self._box.request("fifo")
            fifo = str(answer["path"])
            stdin = InputPipe(fds[0])
        token = uuid.uuid4().hex
        self._out.begin()
        self._err.begin()
        self._stdin.write(script(command, token, fifo).encode())
        await self._stdin.drain()
        started = time.monotonic()
        self._last_output = started
        done: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        running = _Command(token, started + timeout, quiet, done, stdin, fifo)
        running.watcher = asyncio.create_task(self._watch(running))
        self._fg = running
        return running

    async def _watch(self, command: _Command) -> None:
        """Until the command ends: its report, the shell's exit, its deadline, or a stop."""
        assert self._box is not None
        report = asyncio.ensure_future(self._await_report(command.token))
        exited = asyncio.ensure_future(self._box.wait_exit())
        stop = asyncio.ensure_future(command.stop.wait())
        try:
            done, _ = await asyncio.wait(
                {report, exited, stop},
                timeout=max(0.0, command.deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in (report, exited, stop):
                task.cancel()
        command.finishing = True
        try:
            reported = report.result() if report in done and report.exception() is None else None
            if reported is not None:
                result = self._collect(self._apply(reported), restarted=False)
            elif exited in done:  # the command ended the shell itself (exit, exec, kill)
                status = exited.result()
                result = self._collect(status if status is not None else -9)
                await self._restart()
            else:  # past the deadline, or an interrupt that was not enough
                saved = self.snapshot()
                await self._respawn()  # every process of the command ends; background ones not
                result = self._collect(-9, timed_out=not command.stop.is_set())
                await self._restore(saved)
        except asyncio.CancelledError:
            command.done.cancel()
            raise
        except BaseException as exc:
            command.done.set_exception(exc)
            raise
        finally:
            await self._release_input(command)
        result.interrupted = command.interrupted
        command.done.set_result(result)

    async def _release_input(self, command: _Command) -> None:
        if command.stdin is not None:
            command.stdin.abort()
        if command.fifo is not None and self._box is not None and self._box.alive:
            with contextlib.suppress(Exception):
                await self._box.request("unlink", path=command.fifo, timeout=5)

    async def _follow(
        self, command: _Command, until: float | None, quiet: float | None
    ) -> CommandResult:
        """Wait on the command: its end, ``quiet`` seconds without output, or ``until``."""
        if quiet is None:
            quiet = command.quiet
        bound = math.inf if until is None or until >= command.deadline else until
        if command.quiet is None:
            quiet = None  # a command without input is followed to its end
        started = time.monotonic()
        while True:
            if command.done.done():
                return self._finish(command)
            if command.finishing:  # being ended: its output belongs to the final answer
                await asyncio.wait({command.done})
                continue
            now = time.monotonic()
            wake = bound
            if quiet is not None:
                wake = min(wake, max(self._last_output, started) + quiet)
            if now >= wake:
                return self._partial()
            timeout = None if math.isinf(wake) else max(0.0, wake - now)
            if quiet is None:  # output does not move the wake-up time: wait for the end alone
                await asyncio.wait({command.done}, timeout=timeout)
                continue
            self._activity.clear()
            activity = asyncio.ensure_future(self._activity.wait())
            waited: set[asyncio.Future[Any]] = {command.done, activity}
            try:
                await asyncio.wait(waited, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                activity.cancel()

    def _finish(self, command: _Command) -> CommandResult:
        if self._fg is command:
            self._fg = None
        return command.done.result()

    def _partial(self) -> CommandResult:
        assert self._out and self._err
        return CommandResult(
            self._out.take().text(), self._err.take().text(), None, self.cwd, running=True
        )

    async def _internal(self, command: str, timeout: float = 30) -> None:
        """A command of ours (the trap, a restore): its failure to answer means the shell cannot
        run at all (it is not restarted again: that would never end)."""
        assert self._box and self._stdin and self._out and self._err
        token = uuid.uuid4().hex
        self._out.begin()
        self._err.begin()
        self._stdin.write(script(command, token, None).encode())
        await self._stdin.drain()
        report = asyncio.ensure_future(self._await_report(token))
        exited = asyncio.ensure_future(self._box.wait_exit())
        try:
            done, _ = await asyncio.wait(
                {report, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (report, exited):
                task.cancel()
        reported = report.result() if report in done and report.exception() is None else None
        if reported is not None:
            self._apply(reported)
            self._out.end()
            self._err.end()
            return
        failed = self._collect(-1)
        detail = (failed.stderr or self._box.stderr_text()).strip()[-500:]
        raise RuntimeError(f"the shell did not answer ({detail or 'no message'})")

    def _collect(
        self, code: int, *, timed_out: bool = False, restarted: bool = True
    ) -> CommandResult:
        assert self._out and self._err
        return CommandResult(
            self._out.end().text(),
            self._err.end().text(),
            code,
            self.cwd,
            timed_out=timed_out,
            restarted=restarted,
        )

    def _apply(self, reported: tuple[int, str, dict[str, str] | None]) -> int:
        """Take a report's cwd and exported variables (unreadable ones: the last stay); answer
        its exit code."""
        code, self.cwd, exported = reported
        if exported is not None:
            self._exported = exported
        return code

    async def _await_report(self, token: str) -> tuple[int, str, dict[str, str] | None] | None:
        """Read the shell's stdout up to this command's report; anything else is dropped."""
        assert self._reports is not None
        start = f"__SESSION_DONE_{token} ".encode()
        end = f"\0__SESSION_END_{token}\n".encode()
        buffer = self._pending
        while True:
            found = buffer.find(start)
            if found < 0:
                buffer = buffer[-len(start) :]
            else:
                stop = buffer.find(end, found)
                if stop >= 0:
                    self._pending = buffer[stop + len(end) :]
                    return parse_report(buffer[found + len(start) : stop])
                if len(buffer) - found > REPORT_LIMIT:
                    buffer = b""
            chunk = await self._reports.read(1 << 16)
            if not chunk:
                return None
            buffer += chunk

    # --- restarts ---------------------------------------------------------------------------------

    async def _renew(self) -> None:
        """The jail itself ended (killed from outside, out of memory): make a new one."""
        saved = self.snapshot()
        await self._close()
        await self.start()
        await self._restore(saved)

    async def _restart(self) -> None:
        """End the command's processes and start a fresh shell with the saved cwd and exports."""
        saved = self.snapshot()
        await self._respawn()
        await self._restore(saved)

    async def _respawn(self) -> None:
        """A fresh shell in the same jail (the command's processes ended, files and background
        processes kept), or a new jail."""
        try:
            assert self._box is not None
            await self._box.restart()
        except (AssertionError, ConnectionError, TimeoutError, RuntimeError):
            await self._close()
            await self.start()
        self._pending = b""

    def snapshot(self) -> dict[str, Any]:
        """The cwd and the exported variables that differ from the shell's start environment."""
        return snapshot_of(self.cwd, self._exported, self._env)

    async def restore(self, saved: dict[str, Any]) -> None:
        """Bring this shell to a snapshot taken from this or another shell."""
        async with self._lock:
            await self._restore(saved)

    async def _restore(self, saved: dict[str, Any]) -> None:
        await self._internal(restore_script(saved, self._settings.jail.isolated), timeout=10)

    async def ensure_jail(self) -> JailedProcess:
        """The shell's jail, made anew (files restored by ``on_jail``) when it ended."""
        if self._box is None or not self._box.alive:
            async with self._lock:
                if self._box is None or not self._box.alive:
                    if self.running:  # its watcher makes the new one
                        await asyncio.shield(self._current().done)
                    else:
                        await self._renew()
        assert self._box is not None
        return self._box

    async def _close(self) -> None:
        command = self._fg
        if command is not None and command.watcher is asyncio.current_task():
            command = None  # the watcher itself makes a new jail: its command stays
        else:
            self._fg = None
        if command is not None:
            if command.watcher is not None and not command.watcher.done():
                command.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await command.watcher
            if command.stdin is not None:
                command.stdin.abort()
            if not command.done.done():
                command.done.cancel()
        for capture in (self._out, self._err):
            if capture is not None:
                capture.close()
        self._out = self._err = None
        if self._stdin is not None:
            self._stdin.close()
            self._stdin = None
        box, self._box = self._box, None
        if box is not None:
            await box.close()

    async def close(self) -> None:
        """End the shell's jail and everything in it."""
        with contextlib.suppress(Exception):
            await self._close()
