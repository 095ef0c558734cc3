"""The control channel of a jail's supervisor: requests that hand descriptors over.

A ``SOCK_SEQPACKET`` socket carries one JSON message per request (``spawn``, ``signal``,
``fifo``, ``files``...), answered with the same ``id``, and the supervisor's events (a background
process's end). :class:`ControlChannel` is the part of :class:`backends.jail.JailedProcess` that
speaks it; file operations run in a helper the supervisor forks (:mod:`backends.jail_files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backends.jail_settings import ControlError, FileOpError


class SpawnRefused(Exception):
    """The supervisor started nothing; the message says why."""


class ControlChannel:
    """Requests to the supervisor and its events; mixed into :class:`JailedProcess`, which
    opens the socket when the jail starts (``_control``) and says whether it lives (``alive``)."""

    _control: socket.socket | None
    _calls: dict[int, asyncio.Future[tuple[dict[str, Any], list[int]]]]
    _ids: itertools.count[int]
    #: Called with every event the supervisor reports on the control channel.
    on_event: Callable[[dict[str, Any]], None] | None

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    def _on_control(self) -> None:
        sock = self._control
        if sock is None:
            return
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 16, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the jail is gone
                self._close_control()
                return
            try:
                message = json.loads(data)
            except ValueError:
                message = {}
            waiter = self._calls.pop(message.get("id"), None) if "id" in message else None
            if waiter is not None and not waiter.done():
                waiter.set_result((message, fds))
                continue
            for fd in fds:
                os.close(fd)
            if "event" in message and self.on_event is not None:
                try:
                    self.on_event(message)
                except Exception:  # an observer's failure must not stop the channel
                    import logging

                    logging.getLogger(__name__).exception("sandbox event handler failed")

    def _close_control(self) -> None:
        sock, self._control = self._control, None
        if sock is not None:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        calls, self._calls = self._calls, {}
        for waiter in calls.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the sandbox has ended"))

    async def request(
        self, op: str, fds: Sequence[int] = (), *, timeout: float = 30, **fields: Any
    ) -> tuple[dict[str, Any], list[int]]:
        """One request to the supervisor: its answer and the descriptors it sent (the caller
        owns them). The descriptors in ``fds`` are sent, not closed."""
        sock = self._control
        if sock is None or not self.alive:
            raise ConnectionError("the sandbox has ended")
        ident = next(self._ids)
        waiter: asyncio.Future[tuple[dict[str, Any], list[int]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._calls[ident] = waiter
        message = json.dumps({"op": op, "id": ident, **fields}).encode()
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.send_fds(sock, [message], list(fds))
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._calls.pop(ident, None)
                    raise TimeoutError(
                        "the sandbox's supervisor does not read its requests"
                    ) from None
                await asyncio.sleep(0.005)
            except OSError as exc:
                self._calls.pop(ident, None)
                raise ConnectionError(f"the sandbox has ended ({exc})") from None
        try:
            answer, received = await asyncio.wait_for(waiter, timeout)
        finally:
            self._calls.pop(ident, None)
        if "error" in answer:
            for fd in received:
                os.close(fd)
            raise ControlError(str(answer["error"]))
        return answer, received

    async def spawn_piped(
        self, handle: str, argv: Sequence[str], env: Mapping[str, str], cwd: str
    ) -> tuple[int, int, int]:
        """Start ``argv`` in the jail beside its program, with a pipe for its stdin and one for
        its output (stdout and stderr): its pid, the stdin pipe's write end and the output
        pipe's read end (the caller owns both). Raises :class:`SpawnRefused` when the supervisor
        started nothing (a cwd it cannot enter)."""
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            answer, _ = await self.request(
                "spawn", [stdin_r, out_w], handle=handle, argv=list(argv), env=dict(env), cwd=cwd
            )
            if "refused" in answer:
                raise SpawnRefused(str(answer["refused"]))
        except BaseException:
            for fd in (stdin_w, out_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, out_w):
                os.close(fd)
        return int(answer["pid"]), stdin_w, out_r

    async def file_op(
        self,
        request: Mapping[str, Any],
        data: bytes | None = None,
        *,
        limit: int,
        timeout: float = 120,
    ) -> tuple[dict[str, Any], bytes]:
        """Run one :mod:`backends.jail_files` operation in a helper inside the jail.

        ``data`` is streamed to it; the answer is its header and at most ``limit`` bytes of
        payload. Raises :class:`FileOpError` with the helper's own verdict.
        """
        reply_r, reply_w = os.pipe()
        data_r = data_w = -1
        mine = [reply_r]
        theirs = [reply_w]
        if data is not None:
            data_r, data_w = os.pipe()
            mine.append(data_w)
            theirs.append(data_r)
        loop = asyncio.get_running_loop()
        try:
            await self.request(
                "files", theirs, timeout=timeout, request=dict(request), timeout_s=timeout
            )
        except BaseException:
            for fd in mine + theirs:
                os.close(fd)
            raise
        for fd in theirs:
            os.close(fd)
        reader = asyncio.StreamReader(limit=1 << 16)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(reply_r, "rb", buffering=0)
        )
        feeder: asyncio.Task[None] | None = None
        pipe = os.fdopen(data_w, "wb", buffering=0) if data is not None else None
        if pipe is not None and data is not None:
            feeder = asyncio.create_task(_feed(pipe, data))
        try:
            reply = await asyncio.wait_for(_read_reply(reader, limit), timeout)
        finally:
            transport.close()
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feeder
            if pipe is not None:
                pipe.close()  # when the feeder never ran: the helper must see the end
        header_line, _, payload = reply.partition(b"\n")
        try:
            header = json.loads(header_line)
        except ValueError:
            raise FileOpError("error", "the sandbox's file helper gave no answer") from None
        if not header.get("ok"):
            raise FileOpError(str(header.get("kind", "error")), str(header.get("message", "")))
        return header, payload


async def _feed(pipe: Any, data: bytes) -> None:
    """Write ``data`` to a pipe, then close it (the reader sees the end)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        writer.write(data)
        await writer.drain()
    finally:
        writer.close()


async def _read_reply(reader: asyncio.StreamReader, limit: int) -> bytes:
    """A helper's whole answer, refused past ``limit`` bytes of payload (plus its header)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await reader.read(1 << 20):
        total += len(chunk)
        if total > limit + (1 << 20):
            raise FileOpError("too_large", f"the answer is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
