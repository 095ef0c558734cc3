"""File work inside a session's jail: confined paths, the workspace's fingerprint, reads and
writes (its snapshot: :mod:`backends.jail_archive`).

Loaded by :mod:`backends.jail_init` (the jail's pid 1), never by the worker: it runs as the
jail's user, in the jail's mount namespace, so it sees the session's workspace and nothing
the session could not see itself. The supervisor computes fingerprints inline (a walk of ``lstat``
calls, no file is opened) and forks a helper per file operation, which answers on a pipe the
worker handed over: one JSON header line, then the payload bytes (a file's content, blobs).

Paths are confined to the workspace root: a path that leaves it with ``..``, or that reaches a
symlink leading out of it, is refused (``"kind": "invalid"``). Special files (FIFOs, sockets,
devices) are never opened, so no operation can hang on one.

Standard library only, any Python 3.8+: it runs with whatever interpreter the jail can see.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

try:  # the C module itself: hashlib would load OpenSSL first (10 ms at every jail's start)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b

#: A walk stops after this many entries (fingerprint and archive alike).
MAX_ENTRIES = 200_000
#: Largest data a write takes, and a read gives, in one operation.
MAX_TRANSFER = 64 * 1024 * 1024


class OpError(Exception):
    """A refused or failed operation; ``kind`` is invalid, not_found, too_large or error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def locate(root: str, path: str, *, follow: bool = True) -> str:
    """The real path of ``path`` (relative to ``root``, or absolute inside it), confined to root.

    ``follow``: resolve a symlink in the last component too (reading, writing); off for removing
    a link itself. Components that do not exist yet are kept as given.
    """
    if not isinstance(path, str) or "\0" in path:
        raise OpError("invalid", "a path must be a string without NUL characters")
    root = os.path.normpath(root)
    joined = os.path.normpath(os.path.join(root, path or "."))
    if not _within(joined, root):
        raise OpError("invalid", f"{path!r} lies outside the workspace {root}")
    real_root = os.path.realpath(root)
    parent, name = os.path.split(joined)
    if joined == root:
        return real_root
    real_parent = os.path.realpath(parent)
    if not _within(real_parent, real_root):
        raise OpError("invalid", f"{path!r}: a symlink on the way leads out of the workspace")
    target = os.path.join(real_parent, name)
    if follow and os.path.islink(target):
        resolved = os.path.realpath(target)
        if not _within(resolved, real_root):
            raise OpError("invalid", f"{path!r} is a symlink that leads out of the workspace")
        target = resolved
    return target


# --- the workspace's fingerprint -------------------------------------------------------------


def walk(root: str, limit: int = MAX_ENTRIES) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat result) of everything below root, sorted, depth first."""
    count = 0
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            count += 1
            if count > limit:
                return
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            yield rel, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(rel)
        stack.extend(reversed(subdirs))


def scan(root: str, limit: int = MAX_ENTRIES) -> dict:
    """A fingerprint of the workspace: equal fingerprints mean nothing was changed.

    What counts: every path, and a file's mode, size and mtime; a directory's mode (its entries
    count on their own); a symlink's target; another kind's type. One ``lstat`` per entry, no
    file opened; each directory's entries are hashed as one sorted list.
    """
    digest = blake2b(digest_size=16)
    files = size = entries = 0
    stack = [""]
    while stack and entries < limit:
        rel = stack.pop()
        items: list[tuple[str, int, Any, int]] = []
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    mode = st.st_mode
                    if stat.S_ISREG(mode):
                        items.append((entry.name, mode, st.st_size, st.st_mtime_ns))
                        files += 1
                        size += st.st_size
                    elif stat.S_ISDIR(mode):
                        items.append((entry.name, mode, 0, 0))
                        stack.append(f"{rel}/{entry.name}" if rel else entry.name)
                    elif stat.S_ISLNK(mode):
                        try:
                            target = os.readlink(entry.path)
                        except OSError:
                            target = ""
                        items.append((entry.name, mode, target, 0))
                    else:
                        items.append((entry.name, stat.S_IFMT(mode), 0, 0))
        except OSError:
            continue
        items.sort()
        entries += len(items)
        digest.update(repr((rel, items)).encode("utf-8", "surrogateescape"))
    return {
        "digest": digest.hexdigest(),
        "files": files,
        "raw_bytes": size,
        "entries": entries,
        "truncated": entries >= limit,
    }


# --- operations ------------------------------------------------------------------------------


def _kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _lstat(target: str, path: str) -> os.stat_result:
    try:
        return os.lstat(target)
    except FileNotFoundError:
        raise OpError("not_found", f"no such file or directory: {path}") from None
    except NotADirectoryError:
        raise OpError("not_found", f"no such file or directory: {path}") from None


def open_regular(target: str, path: str, flags: int) -> int:
    try:
        fd = os.open(target, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        raise OpError("not_found", f"no such file or directory: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OpError("invalid", f"{path!r} changed into a symlink") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OpError("invalid", f"{path!r} is not a regular file")
    return fd


def op_write(root: str, req: dict, data: bytes) -> dict:
    """Write a whole file (atomically: a temporary file renamed over it), or from ``offset``
    (the file is cut at the end of what was written, so repeating a chunk is harmless)."""
    path = req["path"]
    target = locate(root, path)
    if target == os.path.realpath(root):
        raise OpError("invalid", "the workspace itself is not a file")
    offset = req.get("offset")
    executable = bool(req.get("executable"))
    parent = os.path.dirname(target)
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise OpError("invalid", f"{path!r} exists and is a {_kind_of(existing.st_mode)}")
    if not os.path.isdir(parent):
        if not req.get("make_dirs", True):
            raise OpError("not_found", f"the directory of {path!r} does not exist")
        try:
            os.makedirs(parent, exist_ok=True)
        except FileExistsError:
            raise OpError("invalid", f"a part of {path!r} is not a directory") from None
    if executable:
        mode = 0o755
    elif existing is not None:
        mode = stat.S_IMODE(existing.st_mode)
    else:
        mode = 0o644
    if offset is None:
        # At most 200 bytes of the name: the temporary name of a 255-byte name must fit too.
        stem = os.fsencode(os.path.basename(target))[:200].decode("utf-8", "ignore")
        temporary = os.path.join(parent, f".{stem}.partial-{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            write_all(fd, data)
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            _remove_quietly(temporary)
            raise
        os.close(fd)
        try:
            os.replace(temporary, target)
        except BaseException:
            _remove_quietly(temporary)
            raise
        size = len(data)
    else:
        current = existing.st_size if existing is not None else 0
        if offset > current:
            raise OpError(
                "invalid", f"offset {offset} lies past the end of {path!r} ({current} bytes)"
            )
        fd = open_regular(target, path, os.O_WRONLY | os.O_CREAT)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            write_all(fd, data)
            os.ftruncate(fd, offset + len(data))
            if executable or existing is None:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        size = offset + len(data)
    return {"path": target, "written": len(data), "size": size}


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise OpError("too_large", f"the workspace has no room: {exc.strerror}") from None
            raise


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def op_read(root: str, req: dict) -> tuple[dict, bytes]:
    path = req["path"]
    target = locate(root, path)
    st = _lstat(target, path)
    if stat.S_ISDIR(st.st_mode):
        raise OpError("invalid", f"{path!r} is a directory: list it with list_files")
    offset = int(req.get("offset") or 0)
    length = min(int(req.get("length") or MAX_TRANSFER), MAX_TRANSFER)
    fd = open_regular(target, path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if offset > size:
            raise OpError(
                "invalid", f"offset {offset} lies past the end of {path!r} ({size} bytes)"
            )
        chunks = []
        remaining = min(length, size - offset)
        position = offset
        while remaining > 0:
            chunk = os.pread(fd, min(remaining, 1 << 20), position)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            position += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    header = {"path": target, "size": size, "offset": offset, "bytes": len(data)}
    return header, data


def _entry(root: str, full: str, st: os.stat_result) -> dict:
    entry = {
        "path": full,
        "type": _kind_of(st.st_mode),
        "size": st.st_size if stat.S_ISREG(st.st_mode) else None,
        "mode": oct(stat.S_IMODE(st.st_mode)),
        "mtime": round(st.st_mtime, 3),
    }
    if stat.S_ISLNK(st.st_mode):
        try:
            entry["target"] = os.readlink(full)
        except OSError:
            entry["target"] = None
    return entry


def op_list(root: str, req: dict) -> dict:
    path = req.get("path") or "."
    target = locate(root, path)
    st = _lstat(target, path)
    limit = max(1, min(int(req.get("limit") or 1000), 100_000))
    if not stat.S_ISDIR(st.st_mode):
        return {"path": target, "entries": [_entry(root, target, st)], "truncated": False}
    entries: list[dict] = []
    truncated = False
    if req.get("recursive"):
        for rel, child in walk(target, MAX_ENTRIES):
            if len(entries) >= limit:
                truncated = True
                break
            entries.append(_entry(root, os.path.join(target, rel), child))
    else:
        with os.scandir(target) as it:
            names = sorted(it, key=lambda e: e.name)
        for item in names:
            if len(entries) >= limit:
                truncated = True
                break
            try:
                entries.append(_entry(root, item.path, item.stat(follow_symlinks=False)))
            except OSError:
                continue
    return {"path": target, "entries": entries, "truncated": truncated}


def op_remove(root: str, req: dict) -> dict:
    path = req["path"]
    target = locate(root, path, follow=False)
    if target == os.path.realpath(root):
        raise OpError("invalid", "the workspace itself cannot be removed (remove what is in it)")
    st = _lstat(target, path)
    removed = 1
    if stat.S_ISDIR(st.st_mode):
        if req.get("recursive"):
            import shutil

            removed = sum(1 for _ in walk(target, MAX_ENTRIES)) + 1
            shutil.rmtree(target)
        else:
            try:
                os.rmdir(target)
            except OSError as exc:
                if exc.errno == errno.ENOTEMPTY:
                    raise OpError(
                        "invalid", f"{path!r} is a directory that is not empty: pass recursive"
                    ) from None
                raise
    else:
        os.unlink(target)
    return {"path": target, "removed": removed}


# --- the helper's entry point ----------------------------------------------------------------


def _read_all(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise OpError("too_large", f"more than {limit} bytes sent")
        chunks.append(chunk)


def _archive() -> Any:
    """:mod:`backends.jail_archive`, loaded beside this module by ``Supervisor.files_module``."""
    import jail_archive

    return jail_archive


def serve(root: str, req: dict, reply_fd: int, data_fd: int) -> None:
    """Run one operation; answer on ``reply_fd``: a JSON header line, then the payload."""
    payload = b""
    try:
        op = req.get("op")
        if op == "send":  # streamed straight onto the reply pipe, header first
            if data_fd >= 0:  # the wanted hashes, too many for a control message
                req = dict(req, hashes=json.loads(_read_all(data_fd, MAX_TRANSFER)))
            _archive().op_send(root, req, reply_fd)
            return
        streamed = op == "restore"
        data = _read_all(data_fd, MAX_TRANSFER) if data_fd >= 0 and not streamed else b""
        if op == "write":
            header = op_write(root, req, data)
        elif op == "read":
            header, payload = op_read(root, req)
        elif op == "list":
            header = op_list(root, req)
        elif op == "remove":
            header = op_remove(root, req)
        elif op == "restore":
            header = _archive().op_restore(root, req, data_fd)
        elif op == "unpack":
            header = _archive().op_unpack(root, req, data)
        else:
            raise OpError("invalid", f"unknown file operation {op!r}")
        header = dict(header, ok=True)
    except OpError as exc:
        header, payload = {"ok": False, "kind": exc.kind, "message": exc.message}, b""
    except OSError as exc:
        kind = "too_large" if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else "error"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            kind = "not_found"
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        header, payload = {"ok": False, "kind": kind, "message": message}, b""
    except Exception as exc:  # noqa: BLE001 - the worker gets every failure as an answer
        message = f"{type(exc).__name__}: {exc}"
        header, payload = {"ok": False, "kind": "error", "message": message}, b""
    out = json.dumps(header).encode() + b"\n" + payload
    view = memoryview(out)
    while view:
        try:
            view = view[os.write(reply_fd, view) :]
        except InterruptedError:
            continue
