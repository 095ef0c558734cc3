"""A tiny third-party backend: it lives in its own package and touches nothing of the project.

Its tools count their side effects in files, so tests can tell how often a call really ran.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from backends import Backend, tool


class TestkitBackend(Backend):
    name = "testkit"

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        # A slow backend, for measuring concurrent creations.
        await asyncio.sleep(float(config.get("init_delay", 0)))
        return {"pid": os.getpid(), "config": config}

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        # A slow close, for requests that meet a session while it closes.
        await asyncio.sleep(float(session_info["config"].get("cleanup_delay", 0)))

    @tool("testkit:count")
    async def count(self, path: str, *, session_info: dict[str, Any]) -> dict[str, Any]:
        """Append one line to ``path``: a side effect a test can count."""
        with Path(path).open("a") as f:
            f.write(f"{os.getpid()}\n")
        return {"lines": len(Path(path).read_text().splitlines()), "pid": os.getpid()}

    @tool("testkit:boom")
    async def boom(self, message: str = "boom", *, session_info: dict[str, Any]) -> dict[str, Any]:
        """Raise, to show a raising tool becomes an envelope."""
        raise RuntimeError(message)

    @tool("testkit:sleep")
    async def sleep(self, seconds: float, *, session_info: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(seconds)
        return {"slept": seconds, "pid": os.getpid()}

    @tool("testkit:spawn")
    async def spawn(self, path: str, *, session_info: dict[str, Any]) -> dict[str, Any]:
        """Start a shell that starts a ``sleep`` of its own (their pids go to ``path``), and
        wait for them: a call that keeps processes running until it is cancelled."""
        script = f"sleep 60 & echo $$ $! > {path}; wait"
        proc = await asyncio.create_subprocess_exec("sh", "-c", script)
        return {"returncode": await proc.wait()}

    @tool("testkit:login")
    async def login(
        self, user: str, api_key: str, *, session_info: dict[str, Any]
    ) -> dict[str, Any]:
        """A tool with a secret parameter, for the event log's redaction."""
        return {"user": user, "key_length": len(api_key)}

    @tool("testkit:crash", idempotent=True)
    async def crash(self, *, session_info: dict[str, Any]) -> dict[str, Any]:
        """Kill the worker process that runs it (marked idempotent, so a session retries it)."""
        os.kill(os.getpid(), signal.SIGKILL)
        return {}

    @tool("testkit:pid", idempotent=True)
    async def pid(self, *, session_info: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "instance_pid": session_info["pid"]}


class TallyBackend(Backend):
    """A shared backend: warmed once per worker process, its tools need no session."""

    name = "tally"
    shared = True

    def __init__(self) -> None:
        self.warmups = 0
        self.calls = 0

    async def warmup(self) -> None:
        self.warmups += 1

    @tool("tally:ping")
    async def ping(self, value: str = "") -> dict[str, Any]:
        self.calls += 1
        return {"value": value, "pid": os.getpid(), "warmups": self.warmups, "calls": self.calls}
