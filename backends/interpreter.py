"""A persistent Python interpreter in its session's jail, driven one cell at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.capture import OutputCapture
from backends.jail import JailedProcess
from backends.process_config import ProcessConfig

DRIVER = Path(__file__).with_name("code_driver.py")
#: After an interrupt, how long the interpreter has to answer before it is replaced.
INTERRUPT_GRACE = 2.0
#: The driver's descriptors: requests in, the cells' stdout and stderr, answers out.
_FDS = ("in", "out", "out", "out")


@dataclass
class CellResult:
    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: dict[str, Any] | None = None
    cwd: str = ""
    timed_out: bool = False
    #: Why the interpreter was replaced during this cell (its variables are gone), if it was.
    restarted: str | None = None


class Interpreter:
    """One interpreter process in a jail; cells run one at a time.

    Answers are read only as frames carrying this interpreter's nonce and the cell's sequence
    number (see :mod:`backends.code_driver`): whatever a cell writes cannot shift them.
    """

    def __init__(
        self,
        python: str,
        settings: ProcessConfig,
        on_jail: Callable[[JailedProcess], Awaitable[None]] | None = None,
    ) -> None:
        self.python = python
        self.cwd = settings.cwd
        self.limit = settings.max_output_bytes
        self._settings = settings
        #: Awaited with every new jail (the first one too): files come back into a new one.
        self._on_jail = on_jail
        self._box: JailedProcess | None = None
        self._requests: asyncio.StreamWriter | None = None
        self._answers: asyncio.StreamReader | None = None
        self._out: OutputCapture | None = None
        self._err: OutputCapture | None = None
        self._nonce = ""
        self._seq = 0
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The host pid of the jail that holds the interpreter."""
        return self._box.pid if self._box else None

    def current_cwd(self) -> str:
        return self.cwd

    async def start(self) -> None:
        box = JailedProcess(
            self._settings.jail,
            env=self._settings.env,
            cwd=self._settings.cwd,
            fds=_FDS,
            files=[DRIVER],
            python=self.python,
        )
        await box.start([self.python, "-u", box.path_of(DRIVER)])
        self._box = box
        self._requests = await box.writer(0)
        self._out = OutputCapture(box.end(1), self.limit)
        self._err = OutputCapture(box.end(2), self.limit)
        # An answer holds at most three fields of `limit` characters, escaped.
        self._answers = await box.reader(3, limit=40 * self.limit + (1 << 20))
        await self._hello()
        if self._on_jail is not None:
            await self._on_jail(box)

    async def ensure_jail(self) -> JailedProcess:
        """The interpreter's jail, made anew (files restored by ``on_jail``) when it
        ended."""
        async with self._lock:
            if self._box is None or not self._box.alive:
                await self._renew()
            assert self._box is not None
            return self._box

    async def _hello(self) -> None:
        """Give a (re)started driver its nonce; wait for it to say it is ready."""
        assert self._requests is not None
        self._nonce = secrets.token_hex(16)
        self._seq = 0
        self._requests.write(json.dumps({"nonce": self._nonce, "limit": self.limit}).encode())
        self._requests.write(b"\n")
        await self._requests.drain()
        outcome, answer = await self._outcome(0, 30)
        if outcome != "answer":
            detail = self._box.stderr_text() if self._box else ""
            raise RuntimeError(f"the interpreter {self.python!r} did not start {detail}".strip())

    async def run(self, code: str, timeout: float) -> CellResult:
        async with self._lock:
            if self._box is None or not self._box.alive:
                await self._renew()
            assert self._requests and self._out and self._err
            self._seq += 1
            seq = self._seq
            self._out.begin()
            self._err.begin()
            self._requests.write(json.dumps({"seq": seq, "code": code}).encode() + b"\n")
            await self._requests.drain()
            outcome, answer = await self._outcome(seq, timeout)
            if outcome == "answer":
                return self._cell(answer)
            if outcome == "exited":
                lost = self._cell({}, restarted=_exit_note(answer.get("status")))
                await self._restart()
                return lost
            return await self._interrupt(seq)

    async def _outcome(self, seq: int, timeout: float) -> tuple[str, dict[str, Any]]:
        """("answer", the answer) | ("exited", {"status"}) | ("timeout", {})."""
        assert self._box is not None
        answer = asyncio.ensure_future(self._answer(seq))
        exited = asyncio.ensure_future(self._box.wait_exit())
        try:
            done, _ = await asyncio.wait(
                {answer, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            answer.cancel()
            exited.cancel()
        answered = answer.result() if answer in done and answer.exception() is None else None
        if answered is not None:
            return "answer", answered
        if exited in done:
            return "exited", {"status": exited.result()}
        return "timeout", {}

    async def _answer(self, seq: int) -> dict[str, Any] | None:
        """The next frame with this interpreter's nonce for request ``seq``; nothing else."""
        assert self._answers is not None
        prefix = f"{self._nonce} {seq} ".encode()
        while True:
            try:
                line = await self._answers.readline()
            except ValueError:  # a line past the reader's limit: not a frame of ours
                continue
            if not line:
                return None
            found = line.find(prefix)
            if found < 0:
                continue
            with contextlib.suppress(ValueError):
                answer = json.loads(line[found + len(prefix) :])
                if isinstance(answer, dict):
                    return answer

    async def _interrupt(self, seq: int) -> CellResult:
        """KeyboardInterrupt first (variables survive); a new interpreter if that fails."""
        assert self._box is not None
        await self._box.signal(signal.SIGINT)
        outcome, answer = await self._outcome(seq, INTERRUPT_GRACE)
        if outcome == "answer":
            result = self._cell(answer)
            result.timed_out = True
            return result
        if outcome == "exited":
            replaced = self._cell({}, restarted=_exit_note(answer.get("status")))
            await self._restart()
        else:
            with contextlib.suppress(ConnectionError, TimeoutError, RuntimeError):
                await self._box.restart()  # ends every process in the jail, then collect
            replaced = self._cell(
                {}, restarted="the interpreter ignored the interrupt and was replaced"
            )
            await self._restart(respawned=True)
        replaced.timed_out = True
        return replaced

    def _cell(self, answer: dict[str, Any], *, restarted: str | None = None) -> CellResult:
        assert self._out and self._err
        if answer.get("cwd"):
            self.cwd = answer["cwd"]
        return CellResult(
            stdout=self._out.end().text(),
            stderr=self._err.end().text(),
            result=answer.get("result"),
            error=answer.get("error"),
            cwd=self.cwd,
            restarted=restarted,
        )

    async def _restart(self, *, respawned: bool = False) -> None:
        """A new interpreter in the same jail (every process ended first), or a new jail."""
        try:
            assert self._box is not None and self._box.alive
            if not respawned:
                await self._box.restart()
            await self._hello()
        except (AssertionError, ConnectionError, TimeoutError, RuntimeError):
            await self._renew()

    async def _renew(self) -> None:
        await self._close()
        self.cwd = self._settings.cwd
        await self.start()

    async def _close(self) -> None:
        for capture in (self._out, self._err):
            if capture is not None:
                capture.close()
        self._out = self._err = None
        if self._requests is not None:
            self._requests.close()
            self._requests = None
        box, self._box = self._box, None
        if box is not None:
            await box.close()

    async def close(self) -> None:
        """End the interpreter's jail and everything it started."""
        with contextlib.suppress(Exception):
            await self._close()


def _exit_note(status: int | None) -> str:
    if status is None:
        return (
            "the interpreter's sandbox ended and a new one was started (/workspace restored "
            "from its last snapshot, /tmp lost)"
        )
    return f"the interpreter exited ({status})"
