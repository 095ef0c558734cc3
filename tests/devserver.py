"""A persistent dev server in a child process that a test can stop and start again."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from temporalio.client import Client

from runtime.connection import connect
from runtime.embedded import dev_server_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """`temporal server start-dev` on a SQLite file: history survives a restart."""

    def __init__(
        self,
        db_file: Path,
        dynamic_config: dict[str, object] | None = None,
        *,
        ui_port: int | None = None,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.port = free_port()
        self.ui_port = ui_port or free_port()
        self.command = dev_server_command(
            db_file=db_file,
            port=self.port,
            ui_port=self.ui_port,
            dynamic_config=dynamic_config,
            ui_codec_endpoint=ui_codec_endpoint,
        )
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    async def start(self, timeout: float = 60) -> Client:
        """Start the server; answer once its frontend and its UI's HTTP API both answer.

        The UI server proxies to the frontend and answers 503 for a second or more after the
        frontend is up (longer on a cold machine), so a test that reads the UI waits for it here.
        """
        self.proc = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        try:
            client = await self._wait_for_frontend(deadline)
            await self._wait_for_ui(deadline)
        except BaseException:
            await self.stop()  # no server outlives a failed start
            raise
        return client

    async def _wait_for_frontend(self, deadline: float) -> Client:
        while True:
            self._check_running("its frontend answered")
            try:
                client = await connect(self.address)
                await client.count_workflows()  # visibility answers: the server is ready
                return client
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dev server on {self.address} did not answer in time: {exc!r}"
                    ) from exc
            await asyncio.sleep(0.2)

    async def _wait_for_ui(self, deadline: float) -> None:
        """Poll ``GET /api/v1/namespaces`` until it answers 200 and lists ``default``."""
        url = f"{self.ui_url}/api/v1/namespaces"
        last = "no answer yet"
        while True:
            self._check_running("its UI answered")
            try:
                names = await asyncio.to_thread(_namespace_names, url)
                if "default" in names:
                    return
                last = f"200 without the default namespace: {sorted(names)}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:  # refused, reset, timed out, not JSON
                last = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Temporal UI at {url} did not answer 200 in time (last: {last})"
                )
            await asyncio.sleep(0.2)

    def _check_running(self, waiting_for: str) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(
                f"dev server exited with code {self.proc.returncode} before {waiting_for}: "
                f"{' '.join(self.command)}"
            )

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _namespace_names(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read().decode())
    return {str(ns.get("namespaceInfo", {}).get("name")) for ns in body.get("namespaces") or []}
