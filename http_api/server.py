"""Running the HTTP API with uvicorn, inside an event loop that may run a worker too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from contract import DEFAULT_TASK_QUEUE
from http_api.app import Limits, create_app
from http_api.keys import KEYS_ENV, KeyStore

DEFAULT_PORT = 18890  # AgentFlow's default server_url is http://localhost:18890
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class HttpSettings:
    """Where the API listens, whose keys it takes and the default per-key limits."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    keys_file: str | None = None
    limits: Limits = field(default_factory=Limits)
    config_dir: Path | None = None
    task_queue: str = field(
        default_factory=lambda: os.environ.get("SESSIONS_TASK_QUEUE", DEFAULT_TASK_QUEUE)
    )
    session_ttl: float | None = None


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process that embeds it decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpService:
    """One running API: ``await start()`` answers its URL, ``await stop()`` ends it."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host = host
        self._server = _Server(
            uvicorn.Config(
                app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
            )
        )
        self._port = port
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    async def start(self) -> str:
        """Listen (OSError when the address is taken) and serve in a task; answers the URL."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say TCP (else Nagle and
        # delayed ACKs add 40 ms to every answer).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
        except OSError:
            sock.close()
            raise
        self._task = asyncio.create_task(self._serve(sock))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{port}"
        return self.url

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits on a failed start: not this whole process
            raise RuntimeError(f"the HTTP server stopped (exit {exc.code})") from None

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task

    async def wait(self) -> None:
        if self._task is not None:
            await self._task


def build(settings: HttpSettings, client: Client) -> tuple[FastAPI, str, list[str]]:
    """The app, the host to bind and what to tell the operator at start."""
    keys = KeyStore.load(settings.keys_file)
    host = settings.host
    notes: list[str] = []
    if keys.configured:
        notes.append(f"{len(keys.keys)} API keys configured; sessions belong to each key's user")
    else:
        if host not in LOOPBACK:
            notes.append(f"not listening on {host}: there are no API keys")
        host = "127.0.0.1"
        notes.append(
            f"No API keys configured ({KEYS_ENV} or --keys-file): listening on 127.0.0.1 only, "
            "and every local caller is trusted (make keys with `durable-sessions http-key USER`)"
        )
    app = create_app(
        client=client,
        keys=keys,
        limits=settings.limits,
        task_queue=settings.task_queue,
        session_ttl=settings.session_ttl,
        config_dir=settings.config_dir,
    )
    return app, host, notes


async def serve_http(
    settings: HttpSettings, client: Client, *, stop: asyncio.Event | None = None
) -> None:
    """Serve until ``stop`` is set; prints where (and whether keys guard it) once listening."""
    app, host, notes = build(settings, client)
    service = HttpService(app, host, settings.port)
    try:
        url = await service.start()
    except OSError as exc:
        raise OSError(f"the HTTP API cannot listen on {host}:{settings.port}: {exc}") from exc
    for note in notes:
        print(note, flush=True)
    print(f"HTTP API (AgentFlow protocol) on {url} (docs: {url}/docs)", flush=True)
    if stop is None:
        await service.wait()
        return
    waiter = asyncio.create_task(stop.wait())
    served = asyncio.create_task(service.wait())
    await asyncio.wait({waiter, served}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    await service.stop()
