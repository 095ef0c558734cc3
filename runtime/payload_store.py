"""Large payloads leave workflow history: the SDK's external storage, with a filesystem driver.

Any payload over the threshold (a screenshot, a long output) is stored outside Temporal and
history keeps a small reference; the SDK resolves it transparently on the other side. The
embedded default is a folder every local process shares; ``SESSIONS_PAYLOAD_STORE=s3://bucket``
selects the SDK's S3 driver (needs ``aioboto3``).

The folder holds one subfolder per workflow (a session, a sandbox's shared-tools workflow), named
by a hash of its namespace and id, with an ``owner.json`` naming them. Workers sweep it
(:func:`sweep_forever`, every ``$SESSIONS_PAYLOAD_SWEEP_SECONDS``, default 3600): a closed
workflow's payloads are dropped once it has been closed ``$SESSIONS_PAYLOAD_RETENTION`` seconds
(default 86400: a day, while its history can still be read through queries and exports); a
workflow the server no longer knows (past the namespace's retention) loses them after an hour;
payloads stored outside any workflow, and files of the earlier flat layout, after the retention
counted from when they were written. A running session's payloads are never dropped: its history
may need them to replay. The workspace store (backends/workspace_store.py, a ``workspaces``
folder beside the payloads) is swept by the same rules (:func:`sweep_workspaces`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    ExternalStorage,
    PayloadCodec,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)
from temporalio.service import RPCError, RPCStatusCode

from runtime.encryption import codec_from_env

if TYPE_CHECKING:
    from backends.workspace_store import BlobStore

log = logging.getLogger(__name__)

#: Payloads at least this big (bytes) are stored outside history.
DEFAULT_THRESHOLD = 256 * 1024
#: Seconds a closed workflow's payloads are kept ($SESSIONS_PAYLOAD_RETENTION).
DEFAULT_RETENTION = 24 * 3600
#: Seconds between two sweeps of a worker ($SESSIONS_PAYLOAD_SWEEP_SECONDS).
DEFAULT_SWEEP_EVERY = 3600
#: A workflow the server does not know keeps its payloads this long after they were written
#: (a client stores a large input just before it starts the workflow).
UNKNOWN_GRACE = 3600
RETENTION_ENV = "SESSIONS_PAYLOAD_RETENTION"
SWEEP_ENV = "SESSIONS_PAYLOAD_SWEEP_SECONDS"
OWNER_FILE = "owner.json"
UNOWNED = "unowned"
_KEY = re.compile(r"[0-9a-f]{64}")
_OWNER_DIR = re.compile(r"w-[0-9a-f]{32}")


def default_store_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "durable-sessions" / "payloads"


def _owner_dir(server: str | None, namespace: str, workflow_id: str) -> str:
    owner = f"{server or ''}\n{namespace}\n{workflow_id}"
    return "w-" + hashlib.sha256(owner.encode()).hexdigest()[:32]


class FilesystemStorageDriver(StorageDriver):
    """Payloads as files named by the SHA-256 of their bytes (so a retry stores nothing new), in
    one folder per workflow they were stored for (so a closed session's can be dropped).

    ``server`` is the address of the Temporal server the payloads are stored for (the
    ``SessionsPlugin`` sets it when its client connects): several servers share the default
    folder, and only a worker of the same server may judge whether a workflow closed.
    """

    def __init__(
        self, root: Path, driver_name: str = "durable-sessions.fs", *, server: str | None = None
    ) -> None:
        self.root = root
        self.server = server
        self._name = driver_name

    def name(self) -> str:
        return self._name

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        target = context.target
        owner = None
        if isinstance(target, StorageDriverWorkflowInfo) and target.id:
            owner = (target.namespace, target.id)
        return await asyncio.to_thread(self._store_all, payloads, owner)

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        return await asyncio.to_thread(self._retrieve_all, claims)

    def _folder(self, owner: tuple[str, str] | None) -> str:
        """The payload folder of ``owner`` (namespace, workflow id), made with its owner file."""
        if owner is None:
            (self.root / UNOWNED).mkdir(parents=True, exist_ok=True)
            return UNOWNED
        namespace, workflow_id = owner
        name = _owner_dir(self.server, namespace, workflow_id)
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / OWNER_FILE
        if not marker.exists():
            tmp = marker.with_suffix(f".{os.getpid()}.tmp")
            described = {"server": self.server, "namespace": namespace, "workflow_id": workflow_id}
            tmp.write_text(json.dumps(described))
            tmp.replace(marker)
        return name

    def _store_all(
        self, payloads: Sequence[Payload], owner: tuple[str, str] | None = None
    ) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            data = payload.SerializeToString()
            key = hashlib.sha256(data).hexdigest()
            for attempt in range(3):  # a sweep may remove an emptied folder under our feet
                try:
                    folder = self._folder(owner)
                    path = self.root / folder / key
                    if path.exists():
                        os.utime(path)  # stored again now: a sweep keeps what is in use
                    else:
                        tmp = path.with_suffix(f".{os.getpid()}.tmp")
                        tmp.write_bytes(data)
                        tmp.replace(path)  # atomic: a reader never sees half a payload
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            claims.append(StorageDriverClaim(claim_data={"key": key, "dir": folder}))
        return claims

    def _retrieve_all(self, claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        payloads = []
        for claim in claims:
            key = claim.claim_data["key"]
            folder = claim.claim_data.get("dir")  # absent: the earlier flat layout
            if not _KEY.fullmatch(key):
                raise ValueError(f"not a payload key: {key!r}")
            if folder is not None and folder != UNOWNED and not _OWNER_DIR.fullmatch(folder):
                raise ValueError(f"not a payload folder: {folder!r}")
            path = self.root / folder / key if folder is not None else self.root / key
            payload = Payload()
            payload.ParseFromString(path.read_bytes())
            payloads.append(payload)
        return payloads


def _remove_older(paths: Sequence[Path], before: float) -> int:
    removed = 0
    for path in paths:
        try:
            if path.stat().st_mtime < before:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def _payload_files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if _KEY.fullmatch(p.name)]
    except FileNotFoundError:
        return []


async def _closed_since(client: Client, workflow_id: str) -> float | None:
    """When the workflow closed (epoch seconds); None while it runs; 0.0 if the server does not
    know it (never started, or its history is past the namespace's retention)."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return 0.0
        raise
    if described.status in (None, WorkflowExecutionStatus.RUNNING):
        return None
    return described.close_time.timestamp() if described.close_time else time.time()


async def sweep(
    client: Client, driver: FilesystemStorageDriver, *, retention: float | None = None
) -> int:
    """Sweep ``driver``'s folder once; answer how many payloads went.

    Judged by ``client``'s server (folders of its address and namespace): a workflow closed
    longer than ``retention`` seconds (default ``$SESSIONS_PAYLOAD_RETENTION``) loses what was
    stored before it closed, one the server does not know loses what is older than
    :data:`UNKNOWN_GRACE`, a running one keeps everything. Folders of no known server (a client
    made without the ``SessionsPlugin``) and payloads of no workflow (``unowned``, and files of
    the earlier flat layout) go ``retention`` seconds after they were last written. Folders of
    other servers are left to their own workers.
    """
    keep = retention if retention is not None else retention_seconds()
    server = client.service_client.config.target_host
    now = time.time()
    root = driver.root
    if not root.is_dir():
        return 0
    aged = _payload_files(root / UNOWNED) + _payload_files(root)
    removed = await asyncio.to_thread(_remove_older, aged, now - keep)
    for folder in [p for p in root.iterdir() if _OWNER_DIR.fullmatch(p.name)]:
        try:
            owner = json.loads((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # being written, or not ours
        if owner.get("server") is None:
            before = now - keep
        elif owner["server"] != server or owner.get("namespace") != client.namespace:
            continue
        else:
            closed = await _closed_since(client, str(owner["workflow_id"]))
            if closed is None:
                continue
            if closed == 0.0:
                before = now - UNKNOWN_GRACE
            elif now - closed >= keep:
                before = closed  # what a later run with the same id stored stays
            else:
                continue
        removed += await asyncio.to_thread(_remove_older, _payload_files(folder), before)
        if not _payload_files(folder):
            try:
                (folder / OWNER_FILE).unlink()
                folder.rmdir()
            except OSError:
                pass  # a store came in meanwhile: the next sweep decides
    return removed


async def sweep_workspaces(
    client: Client, store: BlobStore | None = None, *, retention: float | None = None
) -> int:
    """Sweep the workspace store (backends/workspace_store.py) by the same rules: a session's
    manifest roots go as its payloads do, then every blob no remaining manifest names (and
    unused for an hour) goes; answers how many blobs went. A blob another session's manifest
    names (a fork's) stays with that session."""
    # Here, not at the top: ``import client`` (which uses this module) loads no backend code.
    from backends.workspace_store import default_store, sweep_store

    keep = retention if retention is not None else retention_seconds()
    server = client.service_client.config.target_host

    async def judge(owner: dict[str, Any] | None) -> float | None:
        now = time.time()
        if owner is None or owner.get("server") is None:
            return now - keep
        if owner["server"] != server or owner.get("namespace") != client.namespace:
            return None  # another server's: its own workers judge
        closed = await _closed_since(client, str(owner["workflow_id"]))
        if closed is None:
            return None
        if closed == 0.0:
            return now - UNKNOWN_GRACE
        return closed if now - closed >= keep else None

    return await sweep_store(store if store is not None else default_store(), judge)


def retention_seconds() -> float:
    return float(os.environ.get(RETENTION_ENV) or DEFAULT_RETENTION)


def filesystem_drivers(converter: DataConverter) -> list[FilesystemStorageDriver]:
    """The folder drivers of a data converter (none for S3: use a bucket rule)."""
    storage = converter.external_storage
    drivers = storage.drivers if storage is not None else []
    return [d for d in drivers if isinstance(d, FilesystemStorageDriver)]


async def sweep_forever(client: Client, every: float | None = None) -> None:
    """Sweep ``client``'s payload folder now and then every ``every`` seconds (default
    ``$SESSIONS_PAYLOAD_SWEEP_SECONDS``) until cancelled; a failed sweep is retried next time."""
    interval = every if every is not None else float(os.environ.get(SWEEP_ENV) or 0)
    interval = interval or DEFAULT_SWEEP_EVERY
    drivers = filesystem_drivers(client.data_converter)
    while True:
        for driver in drivers:
            try:
                removed = await sweep(client, driver)
                if removed:
                    log.info("payload store %s: dropped %d payloads", driver.root, removed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("payload store %s: sweep failed", driver.root, exc_info=True)
        try:
            removed = await sweep_workspaces(client)
            if removed:
                log.info("workspace store: dropped %d blobs", removed)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("workspace store: sweep failed", exc_info=True)
        await asyncio.sleep(interval)


def storage_driver(spec: str | None = None) -> StorageDriver:
    """The driver named by ``spec`` (or ``$SESSIONS_PAYLOAD_STORE``): a folder path,
    ``file:///path``, or ``s3://bucket``."""
    spec = spec or os.environ.get("SESSIONS_PAYLOAD_STORE") or str(default_store_dir())
    if spec.startswith("s3://"):
        import aioboto3
        from temporalio.contrib.aws.s3driver import S3StorageDriver
        from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client

        bucket = spec.removeprefix("s3://").strip("/")
        s3 = aioboto3.Session().client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
        return S3StorageDriver(client=new_aioboto3_client(s3), bucket=bucket)
    return FilesystemStorageDriver(Path(spec.removeprefix("file://")))


def data_converter(
    spec: str | None = None,
    *,
    threshold: int | None = None,
    codec: PayloadCodec | None | Literal["env"] = "env",
) -> DataConverter:
    """The pydantic data converter with large payloads stored outside history, and encrypted
    when a key is configured (``$DURABLE_SESSIONS_ENCRYPTION_KEYS``, see runtime/encryption.py):
    payloads are encrypted before they are stored, and failure messages and stack traces are
    moved into an encrypted payload too."""
    limit = (
        threshold
        if threshold is not None
        else int(os.environ.get("SESSIONS_PAYLOAD_THRESHOLD", DEFAULT_THRESHOLD))
    )
    storage = ExternalStorage(drivers=[storage_driver(spec)], payload_size_threshold=limit)
    converter = dataclasses.replace(pydantic_data_converter, external_storage=storage)
    if codec == "env":
        codec = codec_from_env()
    if codec is None:
        return converter
    return dataclasses.replace(
        converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
