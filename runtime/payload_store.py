"""Large payloads leave workflow history: the SDK's external storage, with a filesystem driver.

Any payload over the threshold (a screenshot, a long output) is stored outside Temporal and
history keeps a small reference; the SDK resolves it transparently on the other side. The
embedded default is a folder every local process shares; ``SESSIONS_PAYLOAD_STORE=s3://bucket``
selects the SDK's S3 driver (needs ``aioboto3``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from temporalio.api.common.v1 import Payload
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
)

from runtime.encryption import codec_from_env

#: Payloads at least this big (bytes) are stored outside history.
DEFAULT_THRESHOLD = 256 * 1024


def default_store_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "durable-sessions" / "payloads"


class FilesystemStorageDriver(StorageDriver):
    """Payloads as files named by the SHA-256 of their bytes (so a retry stores nothing new)."""

    def __init__(self, root: Path, driver_name: str = "durable-sessions.fs") -> None:
        self.root = root
        self._name = driver_name

    def name(self) -> str:
        return self._name

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        return await asyncio.to_thread(self._store_all, payloads)

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        return await asyncio.to_thread(self._retrieve_all, claims)

    def _store_all(self, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        self.root.mkdir(parents=True, exist_ok=True)
        claims = []
        for payload in payloads:
            data = payload.SerializeToString()
            key = hashlib.sha256(data).hexdigest()
            path = self.root / key
            if not path.exists():
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                tmp.replace(path)  # atomic: a reader never sees half a payload
            claims.append(StorageDriverClaim(claim_data={"key": key}))
        return claims

    def _retrieve_all(self, claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        payloads = []
        for claim in claims:
            key = claim.claim_data["key"]
            if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
                raise ValueError(f"not a payload key: {key!r}")
            payload = Payload()
            payload.ParseFromString((self.root / key).read_bytes())
            payloads.append(payload)
        return payloads


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
