"""Real worker processes for integration tests: started, stopped and killed by their own pid."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """A `python worker.py` child process; ``queue`` is its own pinned task queue."""

    def __init__(self, proc: asyncio.subprocess.Process, queue: str) -> None:
        self.proc = proc
        self.queue = queue

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(
        cls, address: str, *, env: dict[str, str] | None = None, args: list[str] | None = None
    ) -> WorkerProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "worker.py"),
            "--address",
            address,
            *(args or []),
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "LOG_LEVEL": "WARNING", **(env or {})},
        )
        assert proc.stdout is not None
        try:
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
                if not line:
                    raise RuntimeError(f"worker exited with {await proc.wait()} before READY")
                if line.startswith("READY "):
                    worker = cls(proc, line.split()[1])
                    break
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        # Keep draining stdout so the child never blocks on a full pipe.
        worker._drain = asyncio.create_task(_drain(proc.stdout))  # type: ignore[attr-defined]
        return worker

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM (graceful: in-flight calls finish, instances are released), then SIGKILL."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
        return await self.proc.wait()

    async def kill(self) -> None:
        """SIGKILL: the process dies with no chance to clean up (a crash)."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
