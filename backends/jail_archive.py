"""The workspace's content-addressed snapshot inside a session's jail: its manifest, the file
content the worker's store lacks (``send``), and filling a fresh workspace from a manifest and
its blobs (``restore``); plus ``unpack`` of the earlier format (a gzipped tar), for old histories.

:func:`op_manifest` runs inline in the supervisor (``manifest`` on the control socket), which
keeps a cache ``path -> ((size, mtime, ctime, inode), sha256)`` between calls, so a snapshot
hashes only the files that changed; the forked helpers of ``send`` inherit the last manifest.
A manifest is JSON, ``{"v": 1, "entries": [...]}`` in path order, one entry a list:
``[path, "d", mode, mtime_ns]``, ``[path, "l", 0, mtime_ns, target]`` or
``[path, "f", mode, mtime_ns, size, sha256]``; its own sha256 names it in the store.

Loaded with :mod:`backends.jail_files` by :mod:`backends.jail_init` (``Supervisor.files_module``,
which registers both by name, so ``from jail_files import ...`` finds the module loaded first);
never by the worker. Standard library only, any Python 3.8+, as :mod:`backends.jail_files`.
"""

from __future__ import annotations

import io
import json
import os
import stat
import time
from typing import Any

from jail_files import OpError, locate, open_regular, walk, write_all

#: Names of skipped files a manifest's answer lists (the count is always given).
LISTED_SKIPS = 20
#: Hashes of new content a ``manifest`` answer carries at most (the rest: ``op_new``).
LISTED_NEW = 2000
#: A file changed this recently (ns) may change again within the clock's tick with the same
#: size and mtime: its hash is not cached (git's "racily clean" files).
RACY_NS = 200_000_000
#: The supervisor's state: the hash cache, the last manifest, the content the worker stored.
_cache: dict = {}
_current: dict = {}
_stored: set = set()


def _sha256() -> Any:
    import hashlib  # loaded at the first manifest (OpenSSL: ~10 ms), not at the jail's start

    return hashlib.sha256()


def _hash_file(full: str, st: os.stat_result) -> tuple[str, bool] | None:
    """(sha256 of the file's content, whether it held still while read), or None."""
    try:
        fd = open_regular(full, full, os.O_RDONLY)
    except (OpError, OSError):
        return None
    try:
        digest = _sha256()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            digest.update(chunk)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    still = (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )
    return digest.hexdigest(), still


def op_manifest(root: str, req: dict) -> dict:
    """The workspace's manifest (kept for ``send``), and what is new since the content the
    worker last confirmed stored (``stored``: a manifest's digest). At most ``budget`` bytes of
    file content are taken; files past it, in path order, are skipped and listed."""
    global _cache, _current, _stored
    started = time.perf_counter()
    budget = int(req.get("budget", 0))
    stored = req.get("stored")
    if stored and _current.get("digest") == stored:
        _stored = set(_current["paths"])
    racy = time.time_ns() - RACY_NS
    entries: list = []
    paths: dict = {}  # sha256 -> (path, size) of its first file
    cache: dict = {}
    files = dirs = links = taken = hashed = 0
    skipped: list = []
    skipped_count = skipped_bytes = 0
    for rel, st in walk(root):
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            entries.append([rel, "d", stat.S_IMODE(mode), st.st_mtime_ns])
            dirs += 1
        elif stat.S_ISLNK(mode):
            try:
                target = os.readlink(os.path.join(root, rel))
            except OSError:
                continue
            entries.append([rel, "l", 0, st.st_mtime_ns, target])
            links += 1
        elif stat.S_ISREG(mode):
            if taken + st.st_size > budget:
                skipped_count += 1
                skipped_bytes += st.st_size
                if len(skipped) < LISTED_SKIPS:
                    skipped.append(rel)
                continue
            key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            hit = _cache.get(rel)
            if hit is not None and hit[0] == key:
                digest, still = hit[1], True
            else:
                found = _hash_file(os.path.join(root, rel), st)
                if found is None:
                    continue
                digest, still = found
                hashed += 1
            if still and st.st_ctime_ns < racy:
                cache[rel] = (key, digest)
            entries.append([rel, "f", stat.S_IMODE(mode), st.st_mtime_ns, st.st_size, digest])
            paths.setdefault(digest, (rel, st.st_size))
            files += 1
            taken += st.st_size
    _cache = cache
    if entries != _current.get("entries"):  # unchanged: the last one's bytes and digest stand
        data = json.dumps({"v": 1, "entries": entries}, separators=(",", ":")).encode()
        digest = _sha256()
        digest.update(data)
        _current = {"digest": digest.hexdigest(), "data": data, "paths": paths, "entries": entries}
    if stored and stored == _current["digest"]:
        _stored = set(paths)
    new = [[h, size] for h, (_, size) in paths.items() if h not in _stored]
    return {
        "digest": _current["digest"],
        "files": files,
        "dirs": dirs,
        "links": links,
        "entries": len(entries),
        "raw_bytes": taken,
        "manifest_bytes": len(_current["data"]),
        "hashed": hashed,
        "new": new[:LISTED_NEW],
        "new_count": len(new),
        "skipped": skipped,
        "skipped_count": skipped_count,
        "skipped_bytes": skipped_bytes,
        "manifest_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def _send_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue


def op_send(root: str, req: dict, reply_fd: int) -> None:
    """Answer on ``reply_fd``: a header line (the manifest's size, the blobs that follow), the
    last manifest, then each wanted file's content, exactly its manifest size (cut or padded if
    it changed since: the worker's own hash of it then tells)."""
    paths = _current.get("paths", {})
    if req.get("list_new"):
        new = [[h, size] for h, (_, size) in paths.items() if h not in _stored]
        _send_all(reply_fd, json.dumps({"ok": True, "new": new}).encode() + b"\n")
        return
    wanted = [h for h in req.get("hashes", []) if h in paths]
    blobs = [[h, paths[h][1]] for h in wanted]
    data = _current.get("data", b"")
    header = {"ok": True, "digest": _current.get("digest"), "manifest": len(data), "blobs": blobs}
    _send_all(reply_fd, json.dumps(header).encode() + b"\n")
    _send_all(reply_fd, data)
    for h, size in blobs:
        rel = paths[h][0]
        try:
            fd = open_regular(os.path.join(root, rel), rel, os.O_RDONLY)
        except (OpError, OSError):
            fd = -1
        left = size
        try:
            while fd >= 0 and left > 0:
                try:
                    sent = os.sendfile(reply_fd, fd, None, min(left, 1 << 20))
                except InterruptedError:
                    continue
                if sent == 0:
                    break
                left -= sent
        finally:
            if fd >= 0:
                os.close(fd)
        while left > 0:  # it shrank or went: zeros, which cannot match its hash
            _send_all(reply_fd, b"\0" * min(left, 1 << 16))
            left -= min(left, 1 << 16)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise OpError("error", "the restore stream ended early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _copy_in(data_fd: int, target: str, size: int, mode: int) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        left = size
        splice = getattr(os, "splice", None)
        while left > 0:
            if splice is not None:
                moved = splice(data_fd, fd, min(left, 1 << 20))
                if moved == 0:
                    raise OpError("error", "the restore stream ended early")
                left -= moved
            else:
                chunk = _read_exactly(data_fd, min(left, 1 << 20))
                write_all(fd, chunk)
                left -= len(chunk)
        os.fchmod(fd, mode & 0o7777)
    finally:
        os.close(fd)


def _duplicate(source: str, target: str, mode: int) -> None:
    """A copy of an already restored file (same content): never a link, which would share it."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            while True:
                chunk = os.read(src, 1 << 20)
                if not chunk:
                    break
                write_all(dst, chunk)
            os.fchmod(dst, mode & 0o7777)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _place(root: str, name: str) -> str | None:
    """Where an entry goes, confined to the workspace (None: refused); a file in the way goes."""
    name = os.path.normpath(name)
    if name.startswith("/") or name == ".." or name.startswith("../") or name == ".":
        return None
    try:
        target = locate(root, name, follow=False)
    except OpError:
        return None
    return target


def op_restore(root: str, req: dict, data_fd: int) -> dict:
    """Fill the workspace from ``data_fd``: a header line (the manifest's size), the manifest,
    then each distinct content once, in the order of its first file; other files with the
    same content are copied from that one."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(data_fd, 1)
        if not byte:
            raise OpError("error", "the restore stream ended early")
        line += byte
    manifest = json.loads(_read_exactly(data_fd, int(json.loads(line)["manifest"])))
    first: dict = {}  # sha256 -> where its content was written
    later: list = []  # (path, mode, mtime) of directories: set once their content is in
    files = 0
    for entry in manifest["entries"]:
        rel, kind, mode, mtime = entry[0], entry[1], int(entry[2]), int(entry[3])
        target = _place(root, rel)
        if kind == "f":
            size, digest = int(entry[4]), entry[5]
            if digest not in first:
                first[digest] = target
                if target is None:  # refused: its content is read past (its copies go too)
                    _read_exactly(data_fd, size)
                    continue
                _clear(target)
                _copy_in(data_fd, target, size, mode)
            elif target is None or first[digest] is None:
                continue
            else:
                _clear(target)
                _duplicate(first[digest], target, mode)
            os.utime(target, ns=(mtime, mtime), follow_symlinks=False)
            files += 1
        elif target is None:
            continue
        elif kind == "d":
            if os.path.lexists(target) and not os.path.isdir(target):
                os.unlink(target)
            os.makedirs(target, exist_ok=True)
            later.append((target, mode, mtime))
        elif kind == "l":
            _clear(target)
            os.symlink(str(entry[4]), target)
            os.utime(target, ns=(mtime, mtime), follow_symlinks=False)
    for target, mode, mtime in reversed(later):
        try:
            os.chmod(target, mode & 0o7777)
            os.utime(target, ns=(mtime, mtime), follow_symlinks=False)
        except OSError:
            pass
    return {"files": files, "entries": len(manifest["entries"])}


def _clear(target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)


def op_unpack(root: str, req: dict, data: bytes) -> dict:
    """Unpack a gzipped tar (the earlier snapshot format, ``tar+gzip``) into the workspace;
    every member confined."""
    import tarfile

    files = 0
    later = []  # directories get their mode once their content is in
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar:
            target = _place(root, member.name)
            if target is None:
                continue
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                later.append((target, member.mode))
                continue
            _clear(target)
            if member.issym():
                os.symlink(member.linkname, target)
            elif member.isreg():
                source = tar.extractfile(member)
                if source is None:
                    continue
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                try:
                    while True:
                        chunk = source.read(1 << 20)
                        if not chunk:
                            break
                        write_all(fd, chunk)
                    os.fchmod(fd, member.mode & 0o7777)
                finally:
                    os.close(fd)
                os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
                files += 1
    for target, mode in reversed(later):
        try:
            os.chmod(target, mode & 0o7777)
        except OSError:
            pass
    return {"files": files}
