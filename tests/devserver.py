"""A persistent dev server in a child process that a test can stop and start again."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

from temporalio.client import Client

from client.connection import connect
from client.embedded import dev_server_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """`temporal server start-dev` on a SQLite file: history survives a restart."""

    def __init__(self, db_file: Path, dynamic_config: dict[str, object] | None = None) -> None:
        self.port = free_port()
        self.ui_port = free_port()
        self.command = dev_server_command(
            db_file=db_file, port=self.port, ui_port=self.ui_port, dynamic_config=dynamic_config
        )
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Client:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        for _ in range(120):
            try:
                client = await connect(self.address)
                await client.count_workflows()  # visibility answers: the server is ready
                return client
            except Exception:
                await asyncio.sleep(0.25)
        raise RuntimeError("dev server did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
