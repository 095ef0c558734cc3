"""Moving workspace content between a session's jail and the store, on pipes.

The jail's helpers (:mod:`backends.jail_archive`) read and write the workspace; the worker
never opens a path of it, and nothing in the jail ever gets a descriptor of the store (a file
of the store handed in could be reopened for writing through ``/proc``). Both directions stream
through a pipe and a thread on the worker's side: ``sendfile`` from a workspace file onto the
pipe in the jail, and from a blob onto the pipe here; ``splice`` from the pipe into a file there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

from backends.jail import JailedProcess
from backends.jail_settings import FileOpError
from backends.workspace_store import BlobStore, content_sizes

#: The size the transfer pipes ask for (Linux's default ceiling for an unprivileged process).
PIPE_BYTES = 1 << 20


class Inconsistent(RuntimeError):
    """The jail sent content that does not match its manifest (a file changed meanwhile)."""


async def _helper(
    box: JailedProcess, request: dict[str, Any], *, data: bool, timeout: float
) -> tuple[int, int]:
    """Start a file helper; answers the worker's ends: (reply to read, data to write or -1)."""
    reply_r, reply_w = os.pipe()
    mine, theirs = [reply_r], [reply_w]
    data_w = -1
    if data:
        data_r, data_w = os.pipe()
        mine.append(data_w)
        theirs.append(data_r)
    for fd in mine:  # fewer, larger transfers: a 1 MiB pipe instead of 64 KiB
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    try:
        await box.request("files", theirs, timeout=timeout, request=request, timeout_s=timeout)
    except BaseException:
        for fd in mine:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return reply_r, data_w


class _Reader:
    """Buffered reads of a pipe: a header line, then exact sizes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def _more(self) -> None:
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise FileOpError("error", "the sandbox's answer ended early")
        self.buffer += chunk

    def header(self, limit: int = 64 << 20) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise FileOpError("too_large", "the sandbox's answer is too long")
            try:
                self._more()
            except FileOpError:
                raise FileOpError("error", "the sandbox's file helper gave no answer") from None
        line, _, rest = bytes(self.buffer).partition(b"\n")
        self.buffer = bytearray(rest)
        try:
            header = json.loads(line)
        except ValueError:
            raise FileOpError("error", "the sandbox's file helper gave no answer") from None
        if not header.get("ok"):
            raise FileOpError(str(header.get("kind", "error")), str(header.get("message", "")))
        return dict(header)

    def chunks(self, size: int) -> Iterator[bytes]:
        """Exactly ``size`` bytes, in pieces."""
        while size > 0:
            if not self.buffer:
                self._more()
            piece = bytes(self.buffer[:size])
            del self.buffer[: len(piece)]
            size -= len(piece)
            yield piece

    def exactly(self, size: int) -> bytes:
        return b"".join(self.chunks(size))


def _read_line(fd: int) -> dict[str, Any]:
    """A helper's header line; the descriptor is closed after."""
    try:
        return _Reader(fd).header()
    finally:
        os.close(fd)


async def list_new(box: JailedProcess, timeout: float) -> list[tuple[str, int]]:
    """Every content of the last manifest the worker has not confirmed stored."""
    reply, _ = await _helper(box, {"op": "send", "list_new": True}, data=False, timeout=timeout)
    header = await asyncio.wait_for(asyncio.to_thread(_read_line, reply), timeout)
    return [(str(h), int(size)) for h, size in header["new"]]


def _receive(reply: int, store: BlobStore) -> tuple[dict[str, Any], int]:
    reader = _Reader(reply)
    header = reader.header()
    stored = 0
    for digest, size in header["blobs"]:
        fd, tmp = store.temporary(str(digest))
        hasher = hashlib.sha256()
        try:
            for chunk in reader.chunks(int(size)):
                hasher.update(chunk)
                _write(fd, chunk)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        if hasher.hexdigest() != digest:  # changed since it was hashed: not stored
            tmp.unlink(missing_ok=True)
            raise Inconsistent(f"a file changed while the snapshot was taken ({digest[:12]})")
        store.commit(tmp, str(digest))
        stored += int(size)
    return header, stored


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def receive(
    box: JailedProcess, store: BlobStore, hashes: list[str], timeout: float
) -> tuple[int, set[str]]:
    """Put the blobs ``hashes`` of the jail's last manifest in the store (each hashed again
    here); answers the bytes stored and the blobs received. Raises :class:`Inconsistent`."""
    reply, data_w = await _helper(box, {"op": "send"}, data=True, timeout=timeout)
    header, stored = await asyncio.wait_for(
        asyncio.to_thread(_ask_and_receive, data_w, hashes, reply, store), timeout
    )
    return stored, {str(h) for h, _ in header["blobs"]}


def _ask_and_receive(
    data_w: int, hashes: list[str], reply: int, store: BlobStore
) -> tuple[dict[str, Any], int]:
    """Send the wanted hashes on the data pipe (the helper reads them all before it answers),
    then take the answer."""
    try:
        try:
            _write(data_w, json.dumps(hashes).encode())
        finally:
            os.close(data_w)
        return _receive(reply, store)
    finally:
        os.close(reply)  # here, not in the caller: a timed-out caller leaves this thread be


def _stream(data_w: int, store: BlobStore, flat: list[list[Any]]) -> None:
    """The restore stream: header line, the flattened manifest, each distinct content once."""
    manifest = json.dumps({"entries": flat}, separators=(",", ":")).encode()
    _write(data_w, json.dumps({"manifest": len(manifest)}).encode() + b"\n")
    _write(data_w, manifest)
    for digest, size in content_sizes(flat):
        fd = os.open(store.path(digest), os.O_RDONLY)
        try:
            left = size
            while left > 0:
                sent = os.sendfile(data_w, fd, None, min(left, 1 << 20))
                if sent == 0:
                    raise FileOpError("error", f"blob {digest[:12]} is shorter than its file")
                left -= sent
        finally:
            os.close(fd)


async def restore(
    box: JailedProcess, store: BlobStore, flat: list[list[Any]], timeout: float
) -> dict[str, Any]:
    """Fill the jail's (fresh) workspace from a flattened manifest and the store's blobs."""
    reply, data_w = await _helper(box, {"op": "restore"}, data=True, timeout=timeout)
    feeder = asyncio.create_task(asyncio.to_thread(_feed, data_w, store, flat))
    try:
        header = await asyncio.wait_for(asyncio.to_thread(_read_line, reply), timeout)
    finally:
        with contextlib.suppress(Exception):
            await feeder  # ends: the helper answered, so it read all it wanted or failed
    return header


def _feed(data_w: int, store: BlobStore, flat: list[list[Any]]) -> None:
    try:
        _stream(data_w, store, flat)
    except BrokenPipeError:
        pass  # the helper stopped reading: its answer says why
    finally:
        os.close(data_w)
