"""The content-addressed store of workspace files, outside history (docs/workspaces.md).

A folder beside the payload store's (``$SESSIONS_WORKSPACE_STORE``, else ``workspaces/`` in the
folder of ``$SESSIONS_PAYLOAD_STORE``, else in the default payload folder), or a bucket
(``s3://bucket/prefix``, the default beside an ``s3://`` payload store: backends/workspace_s3.py,
with this host's folder as a cache in front)::

    blobs/ab/ab12...ef        a file's content or a directory's tree, named by its sha256
    roots/w-<hash>/owner.json the session (server, namespace, workflow id) the roots below are of
    roots/w-<hash>/<sha256>   an empty file: a manifest (root tree) this session made or restored
    roots/unowned/<sha256>    a manifest made outside any session (a bench, a test)

Only the worker writes here; what a sandbox sends is hashed again before it is stored, so no
session can put content under another content's name. Blobs are shared by every manifest that
names them (a fork restores its parent's manifest: nothing is copied). :func:`sweep_store` drops
the roots of sessions gone past their retention, then every blob no remaining manifest names
(mark and sweep), sparing blobs written within the grace (a snapshot in flight).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

STORE_ENV = "SESSIONS_WORKSPACE_STORE"
CACHE_ENV = "SESSIONS_WORKSPACE_CACHE"
PAYLOAD_ENV = "SESSIONS_PAYLOAD_STORE"
OWNER_FILE = "owner.json"
UNOWNED = "unowned"
#: A blob no manifest names is kept this long after it was written or last found in use.
GRACE_SECONDS = 3600.0
_HASH = re.compile(r"[0-9a-f]{64}")
_OWNER_DIR = re.compile(r"w-[0-9a-f]{32}")

#: (server, namespace, workflow id) of a session; None outside any.
Owner = tuple[str | None, str, str] | None


class StoreUnavailable(RuntimeError):
    """The workspace store's setting names no folder this process can use."""


def default_payload_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "durable-sessions" / "payloads"


def store_spec() -> str:
    """Where this process's workspace store is: a folder, or ``s3://bucket/prefix`` (see the
    module's docstring)."""
    explicit = os.environ.get(STORE_ENV)
    if explicit:
        return explicit
    payloads = os.environ.get(PAYLOAD_ENV) or ""
    if payloads.startswith("s3://"):
        return payloads.rstrip("/") + "/workspaces"
    base = Path(payloads.removeprefix("file://")) if payloads else default_payload_dir()
    return str(base / "workspaces")


def cache_dir() -> Path:
    """This host's cache in front of a bucket (``$SESSIONS_WORKSPACE_CACHE``)."""
    explicit = os.environ.get(CACHE_ENV)
    return Path(explicit) if explicit else default_payload_dir().parent / "workspace-cache"


def owner_dir(owner: Owner) -> str:
    if owner is None:
        return UNOWNED
    server, namespace, workflow_id = owner
    text = f"{server or ''}\n{namespace}\n{workflow_id}"
    return "w-" + hashlib.sha256(text.encode()).hexdigest()[:32]


class BlobStore:
    """A folder of blobs and roots; every method blocks (call it in a thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.roots = root / "roots"
        self._fans: set[str] = set()  # blob folders known to exist (a sweep never removes one)

    def path(self, digest: str) -> Path:
        if not _HASH.fullmatch(digest):
            raise ValueError(f"not a blob name: {digest!r}")
        return self.blobs / digest[:2] / digest

    def missing(self, digests: Iterable[str], *, touch: bool = True) -> list[str]:
        """The blobs of ``digests`` the store lacks; those it has are touched (in use now: a
        sweep spares them until the manifest naming them is a root)."""
        lacking = []
        now = time.time()
        for digest in dict.fromkeys(digests):
            path = self.path(digest)
            try:
                if touch:
                    os.utime(path, (now, now))
                elif not path.exists():
                    lacking.append(digest)
            except FileNotFoundError:
                lacking.append(digest)
        return lacking

    def temporary(self, digest: str) -> tuple[int, Path]:
        """A descriptor to write a blob's content to, and its temporary path (see commit)."""
        final = self.path(digest)
        if digest[:2] not in self._fans:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._fans.add(digest[:2])
        tmp = final.with_name(f".{digest}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp

    def commit(self, tmp: Path, digest: str) -> None:
        os.replace(tmp, self.path(digest))  # atomic: a reader never sees half a blob

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.missing([digest]):
            fd, tmp = self.temporary(digest)
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            self.commit(tmp, digest)
        return digest

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def fetch(self, digests: Iterable[str]) -> None:
        """Make the blobs readable here (a store in front of object storage downloads what
        this host lacks; a folder has them all)."""

    # --- what a sweep needs (backends.workspace_store.sweep_store) -----------------------------

    def owners(self, everyone: bool = False) -> list[tuple[str, dict[str, Any] | None]]:
        """(folder, owner.json's content; None for unowned) of every roots folder; one whose
        owner.json cannot be read yet is left out unless ``everyone``."""
        found: list[tuple[str, dict[str, Any] | None]] = []
        for folder in _dirs(self.roots):
            if folder.name == UNOWNED:
                found.append((folder.name, None))
            elif _OWNER_DIR.fullmatch(folder.name):
                try:
                    found.append((folder.name, json.loads((folder / OWNER_FILE).read_text())))
                except (OSError, ValueError):
                    if everyone:
                        found.append((folder.name, None))
        return found

    def roots_in(self, folder: str) -> list[tuple[str, float]]:
        return [(p.name, _mtime(p)) for p in _files(self.roots / folder)]

    def drop_root(self, folder: str, digest: str) -> None:
        (self.roots / folder / digest).unlink(missing_ok=True)

    def blob_list(self) -> Iterator[tuple[str, float]]:
        for fan in _dirs(self.blobs):
            for blob in _files(fan):
                yield blob.name, _mtime(blob)

    def drop_blob(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def tidy(self, before: float) -> None:
        """Temporary files a crashed worker left, and roots folders left empty."""
        for fan in _dirs(self.blobs):
            for tmp in fan.glob(".*.tmp"):
                if _mtime(tmp) < before:
                    tmp.unlink(missing_ok=True)
        for folder in _dirs(self.roots):
            if not _files(folder):
                try:
                    (folder / OWNER_FILE).unlink(missing_ok=True)
                    folder.rmdir()
                except OSError:
                    pass  # a root came in meanwhile

    def add_root(self, owner: Owner, manifest: str) -> None:
        """Record that ``owner`` holds ``manifest``: its blobs stay while the owner is kept."""
        if not _HASH.fullmatch(manifest):
            raise ValueError(f"not a manifest's name: {manifest[:80]!r}")
        folder = self.roots / owner_dir(owner)
        folder.mkdir(parents=True, exist_ok=True)
        if owner is not None and not (folder / OWNER_FILE).exists():
            server, namespace, workflow_id = owner
            described = {"server": server, "namespace": namespace, "workflow_id": workflow_id}
            tmp = folder / f"{OWNER_FILE}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(described))
            tmp.replace(folder / OWNER_FILE)
        marker = folder / manifest
        marker.touch()


def _files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if _HASH.fullmatch(p.name)]
    except FileNotFoundError:
        return []


def _dirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone meanwhile: never older than anything


@cache
def _store_at(spec: str) -> BlobStore:
    if not spec.startswith("s3://"):
        return BlobStore(Path(spec.removeprefix("file://")))
    try:
        from backends.workspace_s3 import s3_store

        return s3_store(spec, cache_dir())
    except ImportError as exc:
        raise StoreUnavailable(
            f"the workspace store is {spec}, which needs boto3 (pip install aioboto3 boto3): {exc}"
        ) from None


def default_store() -> BlobStore:
    """This process's store (one object per setting)."""
    return _store_at(store_spec())


def _tree(store: BlobStore, digest: str, seen: dict[str, list[Any]]) -> list[Any]:
    if digest not in seen:
        seen[digest] = json.loads(store.read(digest))["entries"]
    return seen[digest]


def flatten(store: BlobStore, root: str) -> list[list[Any]]:
    """A manifest's entries with whole paths, in path order (directories before their
    content): ``[path, "d", mode, mtime]``, ``[path, "l", 0, mtime, target]``,
    ``[path, "f", mode, mtime, size, sha256]`` (what a restore streams into the jail)."""
    flat: list[list[Any]] = []
    seen: dict[str, list[Any]] = {}
    stack: list[tuple[str, int, list[Any]]] = [("", 0, _tree(store, root, seen))]
    while stack:
        prefix, index, entries = stack.pop()
        while index < len(entries):
            entry = entries[index]
            index += 1
            path = f"{prefix}/{entry[0]}" if prefix else str(entry[0])
            if entry[1] == "d":
                flat.append([path, "d", entry[2], entry[3]])
                stack.append((prefix, index, entries))
                stack.append((path, 0, _tree(store, str(entry[4]), seen)))
                break
            flat.append([path, *entry[1:]])
    return flat


def content_sizes(flat: list[list[Any]]) -> list[tuple[str, int]]:
    """(sha256, size) of each distinct file content of a flattened manifest, in the order of
    its first file (the order a restore streams them in)."""
    sizes: dict[str, int] = {}
    for entry in flat:
        if entry[1] == "f" and entry[5] not in sizes:
            sizes[str(entry[5])] = int(entry[4])
    return list(sizes.items())


def reachable(store: BlobStore, root: str, marked: set[str]) -> None:
    """Add to ``marked`` every blob of a manifest: its trees and the file content they name
    (a tree already marked was walked already: forks share theirs)."""
    stack = [root]
    while stack:
        digest = stack.pop()
        if digest in marked:
            continue
        marked.add(digest)
        for entry in json.loads(store.read(digest))["entries"]:
            if entry[1] == "f":
                marked.add(str(entry[5]))
            elif entry[1] == "d":
                stack.append(str(entry[4]))


#: A tree blob larger than this is not read as one (200,000 entries take ~20 MB).
MAX_TREE_BYTES = 64 * 1024 * 1024


def unproven(
    store: BlobStore, root: str, known: set[str], received: set[str]
) -> tuple[list[str], set[str]]:
    """What a new manifest names that its session neither sent now nor held before (a jail
    that names content it cannot send may not claim it: the store having it proves nothing),
    and every blob of the manifest seen on the way (the session holds those once proven).

    Only trees received now are read: a known tree's whole subtree is the session's already."""
    missing: list[str] = []
    seen: set[str] = set()
    stack = [root]
    while stack:
        tree = stack.pop()
        if tree in known or tree in seen:
            continue
        seen.add(tree)
        if tree not in received:
            missing.append(tree)
            continue
        path = store.path(tree)
        if path.stat().st_size > MAX_TREE_BYTES:
            raise ValueError(f"blob {tree[:12]} is too large to be a directory's tree")
        for entry in json.loads(path.read_bytes())["entries"]:
            if entry[1] == "d":
                stack.append(str(entry[4]))
            elif entry[1] == "f":
                digest = str(entry[5])
                seen.add(digest)
                if digest not in known and digest not in received:
                    missing.append(digest)
    return missing, seen


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --- the sweep ---------------------------------------------------------------------------------

#: Given an owner.json's content (None: roots of no session), the time before which its roots
#: go (epoch seconds), or None to keep them all.
Judge = Callable[[dict[str, Any] | None], Awaitable[float | None]]


async def sweep_store(store: BlobStore, judge: Judge, *, grace: float = GRACE_SECONDS) -> int:
    """Drop the roots ``judge`` lets go, then the blobs no remaining root's manifest names and
    nothing used within ``grace`` seconds; answers how many blobs went."""
    import asyncio

    for folder, owner in await asyncio.to_thread(store.owners):
        before = await judge(owner)
        if before is None:
            continue
        for digest, mtime in await asyncio.to_thread(store.roots_in, folder):
            if mtime < before:
                await asyncio.to_thread(store.drop_root, folder, digest)
    return await asyncio.to_thread(_mark_and_sweep, store, grace)


def _mark_and_sweep(store: BlobStore, grace: float) -> int:
    marked: set[str] = set()
    for folder, _ in store.owners(everyone=True):
        for digest, _ in store.roots_in(folder):
            try:
                reachable(store, digest, marked)
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                marked.add(digest)  # a tree gone or unreadable: what it named goes
    before = time.time() - grace
    removed = 0
    for digest, mtime in store.blob_list():
        if digest not in marked and mtime < before:
            store.drop_blob(digest)
            removed += 1
    store.tidy(before)
    return removed
