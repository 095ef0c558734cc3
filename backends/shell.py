"""A persistent bash process, in its session's sandbox, that runs one command at a time."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
import uuid
from dataclasses import dataclass
from typing import Any

from backends.capture import OutputCapture
from backends.process_config import ProcessConfig
from backends.sandbox import WRITABLE, SandboxedProcess

#: Variables the shell itself changes; never part of a snapshot.
_VOLATILE = frozenset({"_", "PWD", "OLDPWD", "SHLVL"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BASH = shutil.which("bash") or "/bin/bash"
ENV = shutil.which("env") or "/usr/bin/env"
#: The most a command's end-of-command report (exit code, cwd, exported variables) may hold.
_REPORT_LIMIT = 32 * 1024 * 1024
#: The shell's descriptors: commands in, reports out, (stderr: nowhere), command stdout, stderr.
_FDS = ("in", "out", "null", "out", "out")


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    return_code: int
    cwd: str
    timed_out: bool = False
    restarted: bool = False
    #: Why the whole sandbox was made anew during this command (its files are gone), if it was.
    sandbox_lost: bool = False


class Shell:
    """One bash process, started by its sandbox's supervisor.

    Each command is sourced from a here-document (so a syntax error stays inside it) with its
    stdout and stderr on pipes the worker reads (bounded, see :mod:`backends.capture`), then the
    shell reports on its own stdout, framed by a per-command random token: the exit code, the
    working directory and ``env -0`` (the exported variables). A shell killed on timeout or that
    exited is started afresh in the same sandbox (its files stay) and brought back to where it was;
    a shell re-created on another worker comes back from the same snapshot.
    """

    def __init__(self, settings: ProcessConfig) -> None:
        self.cwd = settings.cwd
        self._settings = settings
        self._env = settings.env
        self._max = settings.max_output_bytes
        self._exported: dict[str, str] | None = None
        self._box: SandboxedProcess | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._reports: asyncio.StreamReader | None = None
        self._pending = b""
        self._out: OutputCapture | None = None
        self._err: OutputCapture | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The host pid of the sandbox that holds the shell."""
        return self._box.pid if self._box else None

    async def start(self) -> None:
        box = SandboxedProcess(
            self._settings.sandbox, env=self._env, cwd=self._settings.cwd, fds=_FDS
        )
        await box.start([BASH, "--noprofile", "--norc"])
        self._box = box
        self._stdin = await box.writer(0)
        self._reports = await box.reader(1)
        self._pending = b""
        self._out = OutputCapture(box.end(3), self._max)
        self._err = OutputCapture(box.end(4), self._max)
        await self._run("true", timeout=30, restoring=True)  # a shell that cannot run says so now

    async def run(self, command: str, timeout: float) -> CommandResult:
        async with self._lock:
            if self._box is None or not self._box.alive:
                return await self._renew(command, timeout)
            return await self._run(command, timeout)

    async def _renew(self, command: str, timeout: float) -> CommandResult:
        """The sandbox itself ended (killed from outside, out of memory): make a new one."""
        saved = self.snapshot()
        await self._close()
        await self.start()
        await self._restore(saved)
        result = await self._run(command, timeout)
        result.sandbox_lost = True
        return result

    async def _run(self, command: str, timeout: float, *, restoring: bool = False) -> CommandResult:
        """Run one command. ``restoring``: a command of ours, whose failure to answer means the
        shell cannot run at all (it is not restarted again: that would never end)."""
        assert self._box and self._stdin and self._out and self._err
        if "\0" in command:
            raise ValueError("a command cannot contain a NUL character")
        token = uuid.uuid4().hex
        self._out.begin()
        self._err.begin()
        self._stdin.write(_script(command, token).encode())
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
            code, self.cwd, self._exported = reported
            return self._collect(code, restarted=False)
        if restoring:
            failed = self._collect(-1)
            detail = (failed.stderr or self._box.stderr_text()).strip()[-500:]
            raise RuntimeError(f"the shell did not answer ({detail or 'no message'})")
        if exited in done:  # the command ended the shell itself (exit, exec, kill)
            status = exited.result()
            ended = self._collect(status if status is not None else -9)
            await self._restart()
            return ended
        saved = self.snapshot()
        await self._respawn()  # past the timeout: everything in the sandbox ends
        timed_out = self._collect(-9, timed_out=True)
        await self._restore(saved)
        return timed_out

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

    async def _await_report(self, token: str) -> tuple[int, str, dict[str, str]] | None:
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
                    return _parse_report(buffer[found + len(start) : stop])
                if len(buffer) - found > _REPORT_LIMIT:
                    buffer = b""
            chunk = await self._reports.read(1 << 16)
            if not chunk:
                return None
            buffer += chunk

    async def _restart(self) -> None:
        """End everything in the sandbox and start a fresh shell with the saved cwd and exports."""
        saved = self.snapshot()
        await self._respawn()
        await self._restore(saved)

    async def _respawn(self) -> None:
        """A fresh shell in the same sandbox (every process ended, files kept), or a new one."""
        try:
            assert self._box is not None
            await self._box.restart()
        except (AssertionError, ConnectionError, TimeoutError, RuntimeError):
            await self._close()
            await self.start()
        self._pending = b""

    def snapshot(self) -> dict[str, Any]:
        """The cwd and the exported variables that differ from the shell's start environment."""
        env = {k: v for k, v in (self._exported or {}).items() if k not in _VOLATILE}
        changed = {k: v for k, v in env.items() if self._env.get(k) != v}
        removed = (
            sorted(k for k in self._env if k not in env and k not in _VOLATILE)
            if self._exported
            else []
        )
        return {"cwd": self.cwd, "env": changed, "unset": removed}

    async def restore(self, saved: dict[str, Any]) -> None:
        """Bring this shell to a snapshot taken from this or another shell."""
        async with self._lock:
            await self._restore(saved)

    async def _restore(self, saved: dict[str, Any]) -> None:
        lines = [
            f"export {k}={shlex.quote(str(v))}"
            for k, v in saved.get("env", {}).items()
            if _NAME.match(k)
        ]
        lines += [f"unset {k}" for k in saved.get("unset", []) if _NAME.match(k)]
        cwd = saved.get("cwd")
        if cwd:
            quoted = shlex.quote(str(cwd))
            if self._settings.sandbox.isolated and any(
                str(cwd) == r or str(cwd).startswith(r + "/") for r in WRITABLE
            ):
                # A new sandbox starts with empty directories: the path comes back, not its files.
                lines.append(f"mkdir -p -- {quoted} 2>/dev/null; cd -- {quoted} 2>/dev/null")
            else:
                lines.append(f"cd -- {quoted} 2>/dev/null")
        if lines:
            await self._run("\n".join(lines), timeout=10, restoring=True)

    async def _close(self) -> None:
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
        """End the shell's sandbox and everything in it."""
        with contextlib.suppress(Exception):
            await self._close()


def _script(command: str, token: str) -> str:
    """What the shell reads for one command: the command, then its report."""
    return (
        f"{{ . /dev/fd/5; }} 5<<'__SESSION_CMD_{token}' >&3 2>&4 </dev/null 3>&- 4>&-\n"
        f"{command}\n"
        f"__SESSION_CMD_{token}\n"
        f'__rc=$?; builtin printf \'\\n__SESSION_DONE_{token} %d\\0%s\\0\' "$__rc" "$PWD"; '
        f"command {ENV} -0; builtin printf '__SESSION_END_{token}\\n'\n"
    )


def _parse_report(payload: bytes) -> tuple[int, str, dict[str, str]]:
    code, _, rest = payload.partition(b"\0")
    cwd, _, env_part = rest.partition(b"\0")
    env: dict[str, str] = {}
    for item in env_part.split(b"\0") if env_part else []:
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            env[key] = value
    return int(code or b"-1"), cwd.decode(errors="replace"), env
