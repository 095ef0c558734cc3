"""A persistent bash process that runs one command at a time and survives timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Variables the shell itself changes; never part of a snapshot.
_VOLATILE = frozenset({"_", "PWD", "OLDPWD", "SHLVL"})


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    return_code: int
    cwd: str
    timed_out: bool = False
    restarted: bool = False


def _read_capped(path: Path, limit: int) -> str:
    """Read at most ``limit`` bytes, saying plainly how much was cut."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return ""
    with path.open("rb") as f:
        data = f.read(limit)
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text += f"\n[... output truncated: {size - limit} of {size} bytes not shown ...]"
    return text


class Shell:
    """One bash process in its own process group.

    Each command is sourced from a file (so a syntax error stays inside it), with stdout and
    stderr sent to files and a unique marker printed when it ends. The marker line carries the
    exit code and the working directory; ``env -0`` after every command keeps a snapshot of the
    exported variables, so a shell killed on timeout, or re-created on another worker, comes back
    where it was.
    """

    def __init__(self, cwd: str, env: dict[str, str], max_output_bytes: int) -> None:
        self.cwd = cwd
        self._env = env
        self._max = max_output_bytes
        self._dir = Path(tempfile.mkdtemp(prefix="bash-session-"))
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def env_snapshot(self) -> Path:
        return self._dir / "env.sh"

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=self.cwd,
            env=self._env,
            start_new_session=True,
        )

    async def run(self, command: str, timeout: float) -> CommandResult:
        async with self._lock:
            return await self._run(command, timeout)

    async def _run(self, command: str, timeout: float) -> CommandResult:
        assert self._proc and self._proc.stdin and self._proc.stdout
        token = uuid.uuid4().hex
        out, err, script = self._dir / "out", self._dir / "err", self._dir / "cmd.sh"
        script.write_text(command + "\n")
        marker = f"__SESSION_DONE_{token}"
        line = (
            f"{{ . {shlex.quote(str(script))}; }} >{shlex.quote(str(out))} "
            f"2>{shlex.quote(str(err))} </dev/null; __rc=$?; "
            f"env -0 >{shlex.quote(str(self.env_snapshot))}; "
            f'printf \'%s %d %s\\n\' {marker} "$__rc" "$PWD"\n'
        )
        self._proc.stdin.write(line.encode())
        await self._proc.stdin.drain()
        try:
            done = await asyncio.wait_for(self._await_marker(marker), timeout)
        except TimeoutError:
            await self._kill()
            partial = self._collect(-int(signal.SIGKILL), timed_out=True)
            await self._restart()
            return partial
        if done is None:  # the command ended the shell itself (exit, exec, kill)
            ended = self._collect(await self._proc.wait())
            await self._restart()
            return ended
        code, self.cwd = done
        return self._collect(code, restarted=False)

    def _collect(
        self, code: int, *, timed_out: bool = False, restarted: bool = True
    ) -> CommandResult:
        """Read the command's output files (before a restart reuses them)."""
        return CommandResult(
            _read_capped(self._dir / "out", self._max),
            _read_capped(self._dir / "err", self._max),
            code,
            self.cwd,
            timed_out=timed_out,
            restarted=restarted,
        )

    async def _await_marker(self, marker: str) -> tuple[int, str] | None:
        assert self._proc and self._proc.stdout
        prefix = marker.encode() + b" "
        while True:
            raw = await self._proc.stdout.readline()
            if not raw:
                return None
            if raw.startswith(prefix):
                code, _, cwd = (
                    raw[len(prefix) :].decode(errors="replace").rstrip("\n").partition(" ")
                )
                return int(code), cwd

    async def _restart(self) -> None:
        """Kill the whole process group and start a fresh shell with the saved cwd and exports."""
        await self._kill()
        if not os.path.isdir(self.cwd):
            self.cwd = self._env.get("HOME", "/")
        saved = self.snapshot()
        await self.start()
        await self._restore(saved)

    def snapshot(self) -> dict[str, Any]:
        """The cwd and the exported variables that differ from the shell's start environment."""
        env: dict[str, str] = {}
        if self.env_snapshot.exists():
            for item in self.env_snapshot.read_bytes().split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep and key not in _VOLATILE:
                    env[key] = value
        changed = {k: v for k, v in env.items() if self._env.get(k) != v}
        removed = sorted(k for k in self._env if k not in env and k not in _VOLATILE) if env else []
        return {"cwd": self.cwd, "env": changed, "unset": removed}

    async def restore(self, saved: dict[str, Any]) -> None:
        """Bring this shell to a snapshot taken from this or another shell."""
        async with self._lock:
            await self._restore(saved)

    async def _restore(self, saved: dict[str, Any]) -> None:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in saved.get("env", {}).items()]
        lines += [f"unset {k}" for k in saved.get("unset", [])]
        cwd = saved.get("cwd")
        if cwd and os.path.isdir(cwd):
            lines.append(f"cd {shlex.quote(cwd)}")
        if lines:
            await self._run("\n".join(lines), timeout=10)

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()

    async def close(self) -> None:
        """End the shell and everything it started; remove its files."""
        await self._kill()
        shutil.rmtree(self._dir, ignore_errors=True)
