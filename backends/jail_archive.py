"""The workspace's content-addressed snapshot inside a session's jail: its manifest, the blobs
the worker's store lacks (``send``), and filling a fresh workspace from a manifest and its blobs
(``restore``); plus ``unpack`` of the earlier format (a gzipped tar), for old histories.

:func:`op_manifest` runs inline in the supervisor (``manifest`` on the control socket), which
keeps a cache ``path -> ((size, mtime, ctime, inode), sha256)`` between calls, so a snapshot
hashes only the files that changed; the forked helpers of ``send`` inherit the last manifest.
A manifest is a tree of blobs, as git's: each directory's tree is JSON, ``{"v": 2, "entries":
[...]}`` in name order, one entry a list: ``[name, "d", mode, mtime_ns, tree sha256]``,
``[name, "l", 0, mtime_ns, target]`` or ``[name, "f", mode, mtime_ns, size, sha256]``; the
root directory's tree names the manifest. A change stores its file, its directory's tree and
those above it, no more. ``restore`` reads the tree flattened by the worker, ``{"entries":
[[path, kind, mode, mtime_ns, ...]]}`` in path order.

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

from jail_files import MAX_ENTRIES, OpError, locate, open_regular, write_all

#: Names of skipped files a manifest's answer lists (the count is always given).
LISTED_SKIPS = 20
#: Hashes of new blobs a ``manifest`` answer carries at most (the rest: ``send`` with
#: ``list_new``): one control message must stay within the socket's buffer (~208 kB).
LISTED_NEW = 500
#: A file changed this recently (ns) may change again within the clock's tick with the same
#: size and mtime: its hash is not cached (git's "racily clean" files).
RACY_NS = 200_000_000
#: Blobs at most this big are gathered into larger writes by ``send``.
SMALL_BLOB = 64 * 1024
#: Directories deeper than this are left out of a manifest (listed as skipped).
MAX_DEPTH = 256
#: The supervisor's state: the hash cache, each directory's last tree, the last manifest, and
#: the blobs of the manifest the worker last confirmed stored.
_cache: dict = {}
_dirs: dict = {}
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


class _Tree:
    """One manifest in the making: each directory's tree (its entries, a subdirectory by its
    tree's hash), hashing only the files whose stat changed since the last manifest."""

    def __init__(self, root: str, budget: int) -> None:
        self.root = root
        self.budget = budget
        self.racy = time.time_ns() - RACY_NS
        self.paths: dict = {}  # sha256 -> (path, size) of its first file
        self.trees: dict = {}  # sha256 -> a directory's tree (JSON bytes)
        self.cache: dict = {}  # the next manifest's hash cache
        self.dirs_cache: dict = {}  # path -> (entries, sha256, bytes) of its tree
        self.files = self.dirs = self.links = self.taken = self.hashed = self.entries = 0
        self.skipped: list = []
        self.skipped_count = self.skipped_bytes = 0

    def skip(self, rel: str, size: int) -> None:
        self.skipped_count += 1
        self.skipped_bytes += size
        if len(self.skipped) < LISTED_SKIPS:
            self.skipped.append(rel)

    def file(self, rel: str, st: os.stat_result) -> str | None:
        if self.taken + st.st_size > self.budget:
            self.skip(rel, st.st_size)
            return None
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        hit = _cache.get(rel)
        if hit is not None and hit[0] == key:
            digest, still = hit[1], True
        else:
            found = _hash_file(os.path.join(self.root, rel), st)
            if found is None:  # unreadable (mode 000), or gone meanwhile: listed
                self.skip(rel, st.st_size)
                return None
            digest, still = found
            self.hashed += 1
        if still and st.st_ctime_ns < self.racy:
            self.cache[rel] = (key, digest)
        self.paths.setdefault(digest, (rel, st.st_size))
        self.files += 1
        self.taken += st.st_size
        return digest

    def tree(self, rel: str, depth: int) -> str:
        """The hash of ``rel``'s tree, its content walked in name order (files past the budget
        and directories deeper than MAX_DEPTH are left out, listed)."""
        try:
            with os.scandir(os.path.join(self.root, rel) if rel else self.root) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:  # unreadable: the directory is kept, empty; its path is listed
            if rel:
                self.skip(rel, 0)
            items = []
        entries: list = []
        for item in items:
            if self.entries >= MAX_ENTRIES:
                break
            self.entries += 1
            child = f"{rel}/{item.name}" if rel else item.name
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                if depth >= MAX_DEPTH:
                    self.skip(child, 0)
                    continue
                subtree = self.tree(child, depth + 1)
                entries.append([item.name, "d", stat.S_IMODE(mode), st.st_mtime_ns, subtree])
                self.dirs += 1
            elif stat.S_ISLNK(mode):
                try:
                    target = os.readlink(os.path.join(self.root, child))
                except OSError:
                    continue
                entries.append([item.name, "l", 0, st.st_mtime_ns, target])
                self.links += 1
            elif stat.S_ISREG(mode):
                digest = self.file(child, st)
                if digest is not None:
                    mtime = st.st_mtime_ns
                    entries.append([item.name, "f", stat.S_IMODE(mode), mtime, st.st_size, digest])
        last = _dirs.get(rel)
        if last is not None and last[0] == entries:  # unchanged: no JSON, no hash
            _, digest, data = last
        else:
            data = json.dumps({"v": 2, "entries": entries}, separators=(",", ":")).encode()
            hasher = _sha256()
            hasher.update(data)
            digest = hasher.hexdigest()
        self.dirs_cache[rel] = (entries, digest, data)
        self.trees[digest] = data
        return digest


def op_manifest(root: str, req: dict) -> dict:
    """The workspace's manifest (kept for ``send``): its root tree's hash, and the blobs (file
    content, trees) new since the manifest the worker last confirmed stored (``stored``)."""
    global _cache, _dirs, _current, _stored
    started = time.perf_counter()
    stored = req.get("stored")
    if stored and _current.get("digest") == stored:
        _stored = set(_current["blobs"])
    made = _Tree(root, int(req.get("budget", 0)))
    digest = made.tree("", 0)
    _cache, _dirs = made.cache, made.dirs_cache
    blobs = {h: size for h, (_, size) in made.paths.items()}
    blobs.update((h, len(data)) for h, data in made.trees.items())
    _current = {"digest": digest, "paths": made.paths, "trees": made.trees, "blobs": blobs}
    if stored and stored == digest:
        _stored = set(blobs)
    new = [[h, size] for h, size in blobs.items() if h not in _stored]
    return {
        "digest": digest,
        "files": made.files,
        "dirs": made.dirs,
        "links": made.links,
        "entries": made.entries,
        "raw_bytes": made.taken,
        "trees": len(made.trees),
        "manifest_bytes": sum(len(data) for data in made.trees.values()),
        "hashed": made.hashed,
        "new": new[:LISTED_NEW],
        "new_count": len(new),
        "skipped": made.skipped,
        "skipped_count": made.skipped_count,
        "skipped_bytes": made.skipped_bytes,
        "manifest_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def _send_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue


def op_send(root: str, req: dict, reply_fd: int) -> None:
    """Answer on ``reply_fd``: a header line (the blobs that follow), then each wanted blob: a
    tree from memory, a file's content exactly its manifest size (cut or padded if it changed
    since: the worker's own hash of it then tells)."""
    paths = _current.get("paths", {})
    trees = _current.get("trees", {})
    if req.get("list_new"):
        blobs = _current.get("blobs", {})
        new = [[h, size] for h, size in blobs.items() if h not in _stored]
        _send_all(reply_fd, json.dumps({"ok": True, "new": new}).encode() + b"\n")
        return
    wanted = [h for h in req.get("hashes", []) if h in trees or h in paths]
    sizes = [[h, len(trees[h]) if h in trees else paths[h][1]] for h in wanted]
    header = {"ok": True, "digest": _current.get("digest"), "blobs": sizes}
    # Small blobs are gathered and written 1 MiB at a time: one write (and one wake-up of the
    # worker's reader) per small file made a first snapshot of many files pay ~1 ms each.
    out = bytearray(json.dumps(header).encode() + b"\n")
    for h, size in sizes:
        if h in trees:
            out += trees[h]
        elif size <= SMALL_BLOB:
            out += _read_file(root, paths[h][0], size)
        else:
            _send_all(reply_fd, out)
            out = bytearray()
            _send_file(root, paths[h][0], size, reply_fd)
        if len(out) >= 1 << 20:
            _send_all(reply_fd, out)
            out = bytearray()
    _send_all(reply_fd, out)


def _open_quietly(root: str, rel: str) -> int:
    try:
        return open_regular(os.path.join(root, rel), rel, os.O_RDONLY)
    except (OpError, OSError):
        return -1


def _read_file(root: str, rel: str, size: int) -> bytes:
    """A small file's content, exactly ``size`` bytes (zeros past its end: its hash fails)."""
    fd = _open_quietly(root, rel)
    data = b""
    if fd >= 0:
        try:
            data = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    return data[:size] + b"\0" * (size - len(data))


def _send_file(root: str, rel: str, size: int, reply_fd: int) -> None:
    fd = _open_quietly(root, rel)
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
