"""Real worker processes for integration tests: started, stopped and killed by their own pid."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from tests.devserver import free_port

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A `python worker.py` child process; ``queue`` is its own pinned task queue."""

    def __init__(self, proc: asyncio.subprocess.Process, queue: str) -> None:
        self.proc = proc
        self.queue = queue
        #: Everything the process wrote to stdout and stderr, when started with capture=True.
        self.output: list[str] = []
        self.capturing = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(
        cls,
        address: str,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        capture: bool = False,
    ) -> WorkerProcess:
        """Start a worker and wait for its READY line. ``capture``: keep its stdout and stderr
        in ``output`` (otherwise stderr goes to the test's)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "worker.py"),
            "--address",
            address,
            *(args or []),
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE if capture else None,
            env={**os.environ, "LOG_LEVEL": "WARNING", **(env or {})},
        )
        assert proc.stdout is not None
        before: list[str] = []
        try:
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
                if not line:
                    raise RuntimeError(f"worker exited with {await proc.wait()} before READY")
                before.append(line)
                if line.startswith("READY "):
                    worker = cls(proc, line.split()[1])
                    break
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        worker.capturing = capture
        sink = worker.output if capture else None
        if sink is not None:
            sink += before
        # Keep draining the pipes so the child never blocks on a full one.
        worker._drain = [  # type: ignore[attr-defined]
            asyncio.create_task(_drain(stream, sink))
            for stream in (proc.stdout, proc.stderr)
            if stream is not None
        ]
        return worker

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM (graceful: in-flight calls finish, instances are released), then SIGKILL."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
        code = await self.proc.wait()
        await self._drained()
        return code

    async def kill(self) -> None:
        """SIGKILL: the process dies with no chance to clean up (a crash)."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self._drained()

    async def _drained(self, timeout: float = 5) -> None:
        """Wait until the pipes are read to their end (``output`` is complete)."""
        tasks = getattr(self, "_drain", [])
        if tasks and self.capturing:
            await asyncio.wait(tasks, timeout=timeout)


async def _drain(stream: asyncio.StreamReader, sink: list[str] | None = None) -> None:
    while line := await stream.readline():
        if sink is not None:
            sink.append(line.decode(errors="replace"))


async def start_on(address: str, queue: str, started: list[WorkerProcess]) -> WorkerProcess:
    """A worker on ``queue``, kept in ``started`` (the ``workers`` fixture) to be stopped."""
    w = await WorkerProcess.start(address, args=["--task-queue", queue])
    started.append(w)
    return w


async def run_to_end(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Run ``argv`` in the repository until it exits (killed past ``timeout``); (exit code, its
    stdout and stderr). ``env`` replaces the environment (None: this process's)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def wait_listening(
    proc: asyncio.subprocess.Process, port: int, what: str, timeout: float = 60
) -> None:
    """Until ``proc`` accepts connections on 127.0.0.1:``port``; fails if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert proc.returncode is None, f"{what} exited"
            assert time.monotonic() < deadline, f"{what} did not listen in time"
            await asyncio.sleep(0.2)


async def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Run ``python -m cli ARGS`` until it exits (killed past ``timeout``); (exit code, its
    stdout and stderr)."""
    return await run_to_end(
        sys.executable, "-m", "cli", *args, env={**os.environ, **(env or {})}, timeout=timeout
    )


async def serve_once(
    data_dir: Path, *args: str, http_port: int, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """The main command (``serve --exit-after-demo``) on free ports, HTTP API on
    ``http_port``, until it exits: (exit code, its output)."""
    return await run_cli(
        "serve", "--data-dir", str(data_dir), "--port", str(free_port()),
        "--ui-port", str(free_port()), "--http-port", str(http_port), "--exit-after-demo", *args,
        env=env, timeout=180,
    )  # fmt: skip
