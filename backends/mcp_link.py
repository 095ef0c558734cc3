"""One stdio MCP server inside a session's jail, and the ``mcp`` package's client speaking to it.

The jail's supervisor starts the server (its ``spawn`` request, as for ``bash:start``) on two
pipes: its stdin, and its stdout (its stderr goes to a file in the jail's ``/tmp``, so that log
lines never reach the JSON-RPC stream). The worker feeds the client's anyio memory streams from
those pipes, line by line, as :func:`mcp.client.stdio.stdio_client` does with a process it
spawned itself. The client session lives in a task of its own (anyio's scopes must be left in the
task that entered them); calls come from any task of the worker's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp import ClientSession, types
from mcp.shared.message import SessionMessage

from backends.input_pipe import InputClosed, InputPipe
from backends.jail import JailedProcess
from backends.jail_control import SpawnRefused

#: The longest line (one JSON-RPC message) read from a server.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: How long a server has to answer ``initialize`` and ``tools/list``.
START_TIMEOUT = 60.0


@dataclass
class ServerSpec:
    """A stdio server as it runs in the jail: its argv, environment and working directory."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stderr_path: str


@dataclass
class ServerLink:
    """A running server: its pid in the jail, the client session and the tools it listed."""

    spec: ServerSpec
    pid: int | None = None
    session: ClientSession | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exited: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _box: JailedProcess | None = None

    @property
    def alive(self) -> bool:
        return self.session is not None and not self.exited and self.error is None

    async def start(self, box: JailedProcess) -> None:
        """Start the server in ``box`` and wait for its ``initialize`` and tool list."""
        self._box = box
        wrapped = ["/bin/sh", "-c", 'exec "$@" 2>>"$MCP_STDERR"', "sh", *self.spec.argv]
        env = {**self.spec.env, "MCP_STDERR": self.spec.stderr_path}
        try:
            self.pid, stdin_w, out_r = await box.spawn_piped(
                f"mcp:{self.spec.name}", wrapped, env, self.spec.cwd
            )
        except SpawnRefused as exc:
            raise RuntimeError(str(exc)) from None
        self._task = asyncio.create_task(self._hold(InputPipe(stdin_w), out_r))
        try:
            await asyncio.wait_for(self._ready.wait(), START_TIMEOUT)
        except TimeoutError:
            self.error = f"did not answer initialize within {START_TIMEOUT:g}s"
        if self.error is not None:
            await self.stop()
            try:
                said = await output_of(box, ["tail", "-c", "1500", self.spec.stderr_path]) or ""
            except Exception as exc:  # noqa: BLE001 - a diagnosis only
                said = f"({exc})"
            raise RuntimeError(
                f"MCP server {self.spec.name!r} did not start: {self.error}; "
                f"its stderr ({self.spec.stderr_path} in the session): {said.strip() or '-'}"
            )

    async def _hold(self, stdin: InputPipe, out_fd: int) -> None:
        """The client session's task: from ``initialize`` until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(out_fd, "rb", buffering=0)
        )
        read_w, read_r = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_w, write_r = anyio.create_memory_object_stream[SessionMessage](0)

        async def pump_out() -> None:
            async with read_w:
                while line := await reader.readline():
                    if line.strip():
                        await read_w.send(_parse(line))
            self.exited = True

        async def pump_in() -> None:
            async with write_r:
                async for message in write_r:
                    text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    with contextlib.suppress(InputClosed):
                        stdin.write(text.encode() + b"\n")

        pumps = [asyncio.create_task(pump_out()), asyncio.create_task(pump_in())]
        try:
            async with ClientSession(read_r, write_w) as session:
                await session.initialize()
                listed = await session.list_tools()
                self.tools = [_tool_entry(t) for t in listed.tools]
                self.session = session
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # noqa: BLE001 - the starter reports it
            self.error = _describe(exc)
        finally:
            self.session = None
            self._ready.set()
            stdin.abort()
            transport.close()
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump

    async def stop(self) -> None:
        """End the client session and the server (KILL to its process session in the jail)."""
        self._stop.set()
        box, pid = self._box, self.pid
        if box is not None and pid is not None and box.alive and not self.exited:
            with contextlib.suppress(Exception):
                await box.request(
                    "signal", target="background", pid=pid, signal=int(signal.SIGKILL)
                )
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Call one of the server's tools; its result as the MCP ``CallToolResult`` JSON."""
        if self.session is None:
            raise ConnectionError(f"MCP server {self.spec.name!r} is not running")
        result = await asyncio.wait_for(self.session.call_tool(tool, arguments), timeout)
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)


async def output_of(
    box: JailedProcess,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str = "/",
    handle: str = "output",
    timeout: float = 10,
    keep: int = 4000,
) -> str | None:
    """What a command run in the jail prints (stdout and stderr together; its last ``keep``
    bytes), read until it closes its output; None when that takes past ``timeout``. Everything
    is read, so a talkative command never blocks on a full pipe."""
    out_r, out_w = os.pipe()
    null_r = os.open(os.devnull, os.O_RDONLY)
    try:
        await box.request(
            "spawn", [null_r, out_w], handle=handle, argv=argv, env=env or {}, cwd=cwd
        )
    except BaseException:
        os.close(out_r)
        raise
    finally:
        os.close(null_r)
        os.close(out_w)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(out_r, "rb", buffering=0)
    )
    data = bytearray()
    deadline = loop.time() + timeout
    try:
        while chunk := await asyncio.wait_for(
            reader.read(1 << 16), max(0.0, deadline - loop.time())
        ):
            data += chunk
            del data[: max(0, len(data) - keep)]
    except TimeoutError:
        return None
    finally:
        transport.close()
    return data.decode(errors="replace")


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError as exc:
        return exc
    return SessionMessage(message)


def _tool_entry(tool: types.Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description or "",
        "input_schema": tool.input_schema,
    }
