"""A persistent Python interpreter in a child process, driven one cell at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).with_name("code_driver.py")
#: After an interrupt, how long the interpreter has to answer before it is replaced.
INTERRUPT_GRACE = 2.0


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
    """One interpreter process (its own process group); cells run one at a time."""

    def __init__(self, python: str, cwd: str, env: dict[str, str], limit: int) -> None:
        self.python, self.cwd, self.env, self.limit = python, cwd, env, limit
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def current_cwd(self) -> str:
        with contextlib.suppress(OSError):
            if self._proc:
                return os.readlink(f"/proc/{self._proc.pid}/cwd")
        return self.cwd

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            self.python,
            "-u",
            str(DRIVER),
            str(self.limit),
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # cleanup ends whatever the cells started, too
            limit=64 * 1024 * 1024,
        )
        ready = await asyncio.wait_for(self._answer(), 30)
        if ready is None:
            raise RuntimeError(f"the interpreter {self.python!r} exited at start")

    async def run(self, code: str, timeout: float) -> CellResult:
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                await self.start()
            assert self._proc is not None and self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"code": code}).encode() + b"\n")
            await self._proc.stdin.drain()
            try:
                answer = await asyncio.wait_for(self._answer(), timeout)
            except TimeoutError:
                return await self._interrupt()
            if answer is None:  # the cell ended the process (os._exit, a crash)
                code_ = await self._proc.wait()
                await self.start()
                return CellResult(cwd=self.cwd, restarted=f"the interpreter exited ({code_})")
            return _cell(answer)

    async def _interrupt(self) -> CellResult:
        """KeyboardInterrupt first (variables survive); a new interpreter if that fails."""
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGINT)
        try:
            answer = await asyncio.wait_for(self._answer(), INTERRUPT_GRACE)
        except TimeoutError:
            answer = None
        if answer is not None:
            result = _cell(answer)
            result.timed_out = True
            return result
        await self.close()
        await self.start()
        return CellResult(
            cwd=self.cwd,
            timed_out=True,
            restarted="the interpreter ignored the interrupt and was replaced",
        )

    async def _answer(self) -> dict[str, Any] | None:
        assert self._proc is not None and self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        return json.loads(line) if line else None

    async def close(self) -> None:
        """End the interpreter and everything it started (its process group)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _cell(answer: dict[str, Any]) -> CellResult:
    return CellResult(
        stdout=answer["stdout"],
        stderr=answer["stderr"],
        result=answer["result"],
        error=answer["error"],
        cwd=answer["cwd"],
    )
