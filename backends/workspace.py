"""A session's workspace: file tools on it, and its durable snapshot.

Every file operation runs inside the session's jail (:mod:`backends.jail_files`, in a
helper forked by the jail's supervisor), as the jail's user and in its mount namespace: the
worker never opens a session's path on the host. Paths are relative to the workspace root
(``/workspace``) or absolute inside it; ``..`` and symlinks leading out of it answer 4000.

The snapshot (docs/workspaces.md): after each call the jail's supervisor makes the workspace's
manifest (paths, modes, mtimes, symlinks, and each file's sha256, hashed again only when its
size, mtime, ctime or inode changed). When its digest is the last one's, nothing more happens.
Otherwise a helper in the jail sends the manifest and the content the store lacks; the worker
hashes it again, stores it (:mod:`backends.workspace_store`) and the snapshot entry carries only
the manifest's name and counts, so history stays small whatever the workspace's size. A new
instance, of this session or a fork of it, gets the manifest's content streamed into its jail.
At most ``workspace_snapshot_mb`` of file content is taken; files past it are left out, listed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field
from temporalio import activity

from backends.base import tool
from backends.host import ToolCallError
from backends.jail import JailedProcess
from backends.jail_settings import ControlError, FileOpError
from backends.workspace_store import (
    BlobStore,
    Owner,
    StoreUnavailable,
    content_sizes,
    default_store,
    flatten,
    reachable,
    unproven,
)
from backends.workspace_sync import Inconsistent, list_new, receive, restore
from contract import ErrorCode

#: Largest content a write takes and a read answers in one call (bytes, before base64). A call's
#: parameters are at most 1 MiB of JSON: :meth:`client.Sandbox.upload` sends 640 KiB chunks.
MAX_WRITE_BYTES = 16 * 1024 * 1024
MAX_READ_BYTES = 4 * 1024 * 1024
#: How long one file operation may take inside the jail.
FILE_OP_TIMEOUT = 120.0
#: How long a snapshot (hashing what changed, storing it) and a restore may take.
SNAPSHOT_TIMEOUT = 300.0
RESTORE_TIMEOUT = 300.0
#: The snapshot entry's format: a manifest in the content-addressed store (docs/workspaces.md).
FORMAT = "cas"
#: The store's setting was found wrong (said once per process).
_warned: list[str] = []
#: A file or directory name, and a whole path, at most (UTF-8 bytes), and how deep a path may
#: go: Linux's NAME_MAX is 255; its PATH_MAX (4096) also counts the workspace root, which is a
#: host directory with isolation "none". Past them the system answers with errors of its own
#: (or a helper recurses too deep): the tools refuse such a path up front, naming the limit.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 2048
MAX_PATH_DEPTH = 128
log = logging.getLogger(__name__)
_KINDS = {
    "invalid": ErrorCode.INVALID_INPUT,
    "not_found": ErrorCode.NOT_FOUND,
    "too_large": ErrorCode.TOO_LARGE,
}


class Workspace:
    """The workspace of one session's jail.

    ``ensure`` answers a live jail (the backend makes a new one when the old one died, and
    :meth:`attach` is told). ``keep`` is the most file content a snapshot takes (0: none).
    ``store``: where the content goes (default: this process's, :mod:`backends.workspace_store`).
    """

    def __init__(
        self,
        keep: int,
        ensure: Callable[[], Awaitable[JailedProcess]],
        store: BlobStore | None = None,
    ) -> None:
        self.keep = keep
        self._ensure = ensure
        self._store = store
        self._box: JailedProcess | None = None
        #: The latest snapshot entry and the manifest digest of what the workspace holds now.
        self._entry: dict[str, Any] | None = None
        self._digest: str | None = None
        #: The manifest whose content is all in the store (told to the supervisor next time).
        self._stored: str | None = None
        #: Every blob this session has held: sent by its jail, or restored into it.
        self._known: set[str] = set()
        #: A chunked write is under way: the next snapshot leaves the workspace as it was.
        self._defer = False
        #: Measures of the latest snapshot, for bench/README.md's figures and logs.
        self.last: dict[str, Any] = {}
        #: Counts the entries made or restored: a backend's snapshot changed when this did.
        self.version = 0

    @property
    def root(self) -> str | None:
        return self._box.root if self._box else None

    @property
    def store(self) -> BlobStore:
        if self._store is None:
            self._store = default_store()
        return self._store

    async def attach(self, box: JailedProcess) -> None:
        """A new jail: when it replaces a lost one, it gets the last snapshot's files."""
        first = self._box is None
        self._box = box
        self._stored = None  # a new supervisor knows nothing stored
        if not first and self._entry is not None:
            try:
                await self._unpack(box, self._entry)
            except Exception:  # the new jail still serves, with an empty workspace
                log.exception("restoring the workspace into a new sandbox failed")

    # --- files ---------------------------------------------------------------------------------

    async def op(
        self, request: dict[str, Any], data: bytes | None = None, *, limit: int = 1 << 20
    ) -> tuple[dict[str, Any], bytes]:
        problem = path_problem(request.get("path", ""))
        if problem is not None:
            raise ToolCallError(ErrorCode.INVALID_INPUT, problem)
        box = await self._ensure()
        try:
            return await box.file_op(request, data, limit=limit, timeout=FILE_OP_TIMEOUT)
        except FileOpError as exc:
            raise ToolCallError(_KINDS.get(exc.kind, ErrorCode.TOOL_ERROR), exc.message) from None
        except (ConnectionError, ControlError, TimeoutError) as exc:
            raise ToolCallError(
                ErrorCode.TOOL_ERROR, f"the session's sandbox did not answer: {exc}"
            ) from None

    def defer_snapshot(self) -> None:
        self._defer = True

    # --- the snapshot ----------------------------------------------------------------------------

    async def baseline(self) -> None:
        """The fresh workspace's manifest at start: the jail loads its file helper and hashing
        now (~10 ms), not during the session's first call (an instance may start ahead)."""
        await self.snapshot()

    async def _manifest(self, box: JailedProcess) -> dict[str, Any]:
        answer, _ = await box.request(
            "manifest", timeout=SNAPSHOT_TIMEOUT, budget=self.keep, stored=self._stored
        )
        return answer

    async def snapshot(self) -> dict[str, Any] | None:
        """The workspace entry of the backend's snapshot: a new one only when it changed."""
        box = self._box
        if not self.keep or box is None or not box.alive:
            return self._entry
        started = time.perf_counter()
        try:
            found = await self._manifest(box)
        except (ConnectionError, ControlError, TimeoutError):
            return self._entry
        self.last = {"manifest_ms": found.get("manifest_ms"), "stored": False}
        if found.get("digest") == self._digest:
            return self._entry
        if self._defer:  # a chunked upload: its last chunk takes the snapshot
            self._defer = False
            return self._entry
        if self._entry is None and not found.get("entries"):
            self._digest = found.get("digest")  # never written to: nothing to keep
            return None
        try:
            async with _heartbeats():
                entry = await self._store_snapshot(box, found, started)
        except Inconsistent as exc:  # the next call's snapshot tries again
            log.info("workspace snapshot skipped: %s", exc)
            return self._entry
        except StoreUnavailable as exc:  # a setting to fix, said once, not at every call
            if not _warned:
                _warned.append(str(exc))
                log.warning("workspace snapshots are off: %s", exc)
            return self._entry
        except (FileOpError, OSError, ConnectionError, ControlError, TimeoutError, RuntimeError):
            log.exception("workspace snapshot failed; the previous one stays")
            return self._entry
        self._entry = entry
        self.version += 1
        return entry

    async def _store_snapshot(
        self, box: JailedProcess, found: dict[str, Any], started: float
    ) -> dict[str, Any]:
        """Put what the store lacks of the jail's last manifest in it; answers the entry."""
        store = self.store
        new = found["new"]
        if found["new_count"] > len(new):
            new = await list_new(box, SNAPSHOT_TIMEOUT)
        # What the store has but this session never held is sent too: its content is the
        # proof that the session has it (a name alone could reach another session's files).
        present = [h for h, _ in new if h not in self._known]
        lacking = await asyncio.to_thread(store.missing, [h for h, _ in new])
        wanted = list(dict.fromkeys([*lacking, *present]))
        stored_bytes, received = await receive(box, store, wanted, SNAPSHOT_TIMEOUT)
        digest = str(found["digest"])
        for _ in range(3):  # a tree named only by a new tree: its own round
            try:
                missing, seen = await asyncio.to_thread(
                    unproven, store, digest, self._known, received
                )
            except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
                raise Inconsistent(f"the snapshot's trees do not hold: {exc}") from None
            if not missing:
                break
            more, got = await receive(box, store, missing, SNAPSHOT_TIMEOUT)
            if not got:
                raise Inconsistent(f"the sandbox names {len(missing)} blobs it cannot send")
            stored_bytes, received = stored_bytes + more, received | got
        else:
            raise Inconsistent("the snapshot's trees name blobs the sandbox did not send")
        self._known |= seen
        await asyncio.to_thread(store.add_root, _owner(), digest)
        self._digest = self._stored = digest
        took = (time.perf_counter() - started) * 1000
        self.last = {
            "manifest_ms": found.get("manifest_ms"),
            "stored": True,
            "took_ms": round(took, 1),
            "hashed": found.get("hashed"),
            "blobs_new": len(received),
            "bytes_new": stored_bytes,
            "manifest_bytes": found.get("manifest_bytes"),
        }
        return {
            "format": FORMAT,
            "manifest": digest,
            "files": found["files"],
            "dirs": found["dirs"],
            "links": found["links"],
            "raw_bytes": found["raw_bytes"],
            "blobs_new": len(received),
            "bytes_new": stored_bytes,
            "skipped": found["skipped"],
            "skipped_count": found["skipped_count"],
            "skipped_bytes": found["skipped_bytes"],
            "taken_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "took_ms": round(took, 1),
        }

    async def restore(self, entry: dict[str, Any] | None) -> None:
        """Fill this (fresh) jail's workspace from a snapshot entry, of this session or another
        (a fork); it is the baseline after."""
        if not entry or self._box is None:
            return
        await self._unpack(self._box, entry)
        self._entry = entry
        self.version += 1

    async def _unpack(self, box: JailedProcess, entry: dict[str, Any]) -> None:
        if entry.get("format") == FORMAT:
            digest = str(entry.get("manifest", ""))
            store = self.store
            # A root of this session first: its blobs stay even when the one that made them goes.
            await asyncio.to_thread(store.add_root, _owner(), digest)
            flat = await asyncio.to_thread(flatten, store, digest)
            await asyncio.to_thread(reachable, store, digest, self._known)
            # Only what this host lacks comes from object storage (a folder has it all).
            await asyncio.to_thread(store.fetch, [h for h, _ in content_sizes(flat)])
            started = time.perf_counter()
            async with _heartbeats():
                await restore(box, store, flat, RESTORE_TIMEOUT)
            self.last = {"restore_ms": round((time.perf_counter() - started) * 1000, 1)}
            self._stored = digest
        else:  # "tar+gzip": a snapshot of the earlier format, in an old history
            try:
                data = base64.b64decode(entry.get("data", ""), validate=True)
            except (binascii.Error, ValueError):
                return
            await box.file_op({"op": "unpack"}, data, limit=1 << 20, timeout=FILE_OP_TIMEOUT)
        self._digest = (await self._manifest(box)).get("digest")


@contextlib.asynccontextmanager
async def _heartbeats() -> AsyncIterator[None]:
    """Heartbeats while a large snapshot or restore runs in a call's activity (the workflow
    takes a call's worker for lost after seconds without one; a local activity has none)."""
    try:
        local = activity.info().is_local
    except RuntimeError:
        local = True
    beating = None if local else asyncio.create_task(_beat())
    try:
        yield
    finally:
        if beating is not None:
            beating.cancel()


async def _beat() -> None:
    while True:
        await asyncio.sleep(1)
        activity.heartbeat()


def _owner() -> Owner:
    """The session whose activity runs now (server, namespace, workflow id); None outside one."""
    try:
        info = activity.info()
    except RuntimeError:
        return None
    try:
        server: str | None = activity.client().service_client.config.target_host
    except RuntimeError:
        server = None
    return (server, info.workflow_namespace or "", info.workflow_id or info.activity_id)


async def changed_snapshot(session_info: dict[str, Any]) -> dict[str, Any] | None:
    """A session's snapshot of its ``workspace``, when it changed since the last one; else None
    (what the code and mcp backends keep of a session)."""
    workspace: Workspace = session_info["workspace"]
    entry = await workspace.snapshot()
    signature = json.dumps([workspace.version])
    if entry is None or signature == session_info.get("snapshot_signature"):
        return None
    session_info["snapshot_signature"] = signature
    return {"workspace": entry}


def path_problem(path: str) -> str | None:
    """Why ``path`` is past a file name, path length or depth limit, or None."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    for part in parts:
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_NAME_BYTES:
            return (
                f"a file or directory name is at most {MAX_NAME_BYTES} bytes (NAME_MAX); "
                f"{part[:40]!r}... is {size} bytes"
            )
    size = len(path.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        return f"a path is at most {MAX_PATH_BYTES} bytes long; {path[:40]!r}... is {size} bytes"
    if len(parts) > MAX_PATH_DEPTH:
        return (
            f"a path is at most {MAX_PATH_DEPTH} directories deep; {path[:40]!r}... is "
            f"{len(parts)} deep"
        )
    return None


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ToolCallError(ErrorCode.INVALID_INPUT, f"content is not base64: {exc}") from None
    return content.encode("utf-8", "surrogatepass")


def _text(data: bytes, at_end: bool) -> tuple[str, int]:
    """UTF-8 text of ``data`` and the bytes it covers: a character cut at the end of a chunk
    (not of the file) is left for the next read."""
    try:
        return data.decode("utf-8"), len(data)
    except UnicodeDecodeError as exc:
        if not at_end and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8"), exc.start
        raise ToolCallError(
            ErrorCode.INVALID_INPUT,
            f"the file is not UTF-8 text (byte {exc.start}): read it with encoding base64",
        ) from None


class WorkspaceTools:
    """File tools on a session's workspace, for any backend whose sessions have one.

    Mix it into a backend whose ``session_info`` holds its :class:`Workspace` under
    ``"workspace"``; the tools are offered under the backend's own prefix (``bash:write_file``,
    ``code:write_file``), so they reach the session whose workspace they work on.
    """

    @tool("*:write_file", idempotent=True)
    async def write_file(
        self,
        path: str,
        content: str,
        encoding: Literal["utf-8", "base64"] = "utf-8",
        offset: Annotated[int, Field(ge=0)] | None = None,
        more: bool = False,
        executable: bool = False,
        make_dirs: bool = True,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Write a file in the session's workspace (path relative to it, or absolute inside it).
        content: text, or base64 with encoding "base64". Without offset the file is replaced
        whole (atomically); with offset the content goes there and the file ends after it (so a
        repeated chunk is harmless). more: further chunks follow (the workspace snapshot waits
        for the last). Returns path, written, size."""
        data = _decode(content, encoding)
        if len(data) > MAX_WRITE_BYTES:
            raise ToolCallError(
                ErrorCode.TOO_LARGE,
                f"{len(data)} bytes in one write (at most {MAX_WRITE_BYTES}); send chunks with "
                "offset",
            )
        workspace: Workspace = session_info["workspace"]
        request = {
            "op": "write",
            "path": path,
            "offset": offset,
            "executable": executable,
            "make_dirs": make_dirs,
        }
        header, _ = await workspace.op(request, data)
        if more:
            workspace.defer_snapshot()
        return {"path": header["path"], "written": header["written"], "size": header["size"]}

    @tool("*:read_file", idempotent=True)
    async def read_file(
        self,
        path: str,
        offset: Annotated[int, Field(ge=0)] = 0,
        length: Annotated[int, Field(ge=1, le=MAX_READ_BYTES)] = MAX_READ_BYTES,
        encoding: Literal["utf-8", "base64"] = "utf-8",
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Read a file of the session's workspace, from offset, at most length bytes (4 MiB).
        Returns content (UTF-8 text, or base64), bytes, size (of the whole file), next_offset and
        eof."""
        workspace: Workspace = session_info["workspace"]
        request = {"op": "read", "path": path, "offset": offset, "length": length}
        header, data = await workspace.op(request, limit=length)
        size = int(header["size"])
        at_end = offset + len(data) >= size
        if encoding == "base64":
            content, covered = base64.b64encode(data).decode("ascii"), len(data)
        else:
            content, covered = _text(data, at_end)
        return {
            "path": header["path"],
            "content": content,
            "encoding": encoding,
            "offset": offset,
            "bytes": covered,
            "size": size,
            "next_offset": offset + covered,
            "eof": offset + covered >= size,
        }

    @tool("*:list_files", idempotent=True)
    async def list_files(
        self,
        path: str = ".",
        recursive: bool = False,
        limit: Annotated[int, Field(ge=1, le=10000)] = 1000,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """List a directory of the session's workspace (or describe one file): entries with path,
        type (file, directory, symlink, other), size, mode, mtime, and a symlink's target."""
        workspace: Workspace = session_info["workspace"]
        request = {"op": "list", "path": path, "recursive": recursive, "limit": limit}
        header, _ = await workspace.op(request, limit=16 << 20)
        return {k: header[k] for k in ("path", "entries", "truncated")}

    @tool("*:remove_file")
    async def remove_file(
        self, path: str, recursive: bool = False, *, session_info: dict[str, Any]
    ) -> dict[str, Any]:
        """Remove a file, a symlink (not what it points to) or an empty directory of the
        session's workspace; a directory with its content with recursive. Returns removed."""
        workspace: Workspace = session_info["workspace"]
        header, _ = await workspace.op({"op": "remove", "path": path, "recursive": recursive})
        return {"path": header["path"], "removed": header["removed"]}
