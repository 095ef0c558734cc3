"""The workspace store in a bucket (``$SESSIONS_WORKSPACE_STORE=s3://bucket/prefix``), with
this host's folder as a cache in front of it (docs/workspaces.md).

The bucket holds what the folder store holds, under the same names (``blobs/ab/<sha256>``,
``roots/w-<hash>/owner.json``, ``roots/w-<hash>/<sha256>``). Every blob a snapshot receives is
uploaded before the snapshot's root is written; a restore downloads into the cache only the
blobs this host lacks. The cache may hold blobs a sweep removed from the bucket: that does no
harm, because a snapshot uploads every blob its jail sent, and a session never names a blob it
did not send or hold under a root (backends.workspace.Workspace proves what it names).

Uses ``boto3`` (installed with ``aioboto3``, which the payload store's S3 driver needs); the
endpoint comes from ``$AWS_ENDPOINT_URL`` as for the payload store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from backends.workspace_store import (
    _HASH,
    _OWNER_DIR,
    OWNER_FILE,
    UNOWNED,
    BlobStore,
    Owner,
    owner_dir,
)


def _absent(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound")


class S3BlobStore(BlobStore):
    """Blobs and roots in ``bucket`` under ``prefix``; ``cache`` is this host's folder.

    ``client`` is a boto3 S3 client (made from the environment when None)."""

    def __init__(self, bucket: str, prefix: str, cache: Path, client: Any = None) -> None:
        super().__init__(cache)
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.s3 = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _blob_key(self, digest: str) -> str:
        self.path(digest)  # checks the name
        return f"{self.prefix}blobs/{digest[:2]}/{digest}"

    def _has(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _absent(exc):
                return False
            raise
        return True

    def missing(self, digests: Iterable[str], *, touch: bool = True) -> list[str]:
        """The blobs the bucket lacks (the cache is not asked: it may hold swept ones)."""
        return [d for d in dict.fromkeys(digests) if not self._has(self._blob_key(d))]

    def commit(self, tmp: Path, digest: str) -> None:
        self.s3.upload_file(str(tmp), self.bucket, self._blob_key(digest))
        super().commit(tmp, digest)

    def fetch(self, digests: Iterable[str]) -> None:
        for digest in dict.fromkeys(digests):
            if self.path(digest).exists():
                continue
            fd, tmp = self.temporary(digest)
            os.close(fd)
            try:
                self.s3.download_file(self.bucket, self._blob_key(digest), str(tmp))
                super().commit(tmp, digest)
            finally:
                tmp.unlink(missing_ok=True)

    def read(self, digest: str) -> bytes:
        self.fetch([digest])
        return super().read(digest)

    def add_root(self, owner: Owner, manifest: str) -> None:
        if not _HASH.fullmatch(manifest):
            raise ValueError(f"not a manifest's name: {manifest[:80]!r}")
        folder = f"{self.prefix}roots/{owner_dir(owner)}"
        if owner is not None and not self._has(f"{folder}/{OWNER_FILE}"):
            server, namespace, workflow_id = owner
            described = {"server": server, "namespace": namespace, "workflow_id": workflow_id}
            body = json.dumps(described).encode()
            self.s3.put_object(Bucket=self.bucket, Key=f"{folder}/{OWNER_FILE}", Body=body)
        self.s3.put_object(Bucket=self.bucket, Key=f"{folder}/{manifest}", Body=b"")

    # --- what a sweep needs ----------------------------------------------------------------------

    def _list(self, under: str) -> Iterator[tuple[str, float]]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + under
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :], item["LastModified"].timestamp()

    def owners(self, everyone: bool = False) -> list[tuple[str, dict[str, Any] | None]]:
        folders = {key.split("/")[1] for key, _ in self._list("roots/") if key.count("/") == 2}
        found: list[tuple[str, dict[str, Any] | None]] = []
        for folder in sorted(folders):
            if folder == UNOWNED:
                found.append((folder, None))
            elif _OWNER_DIR.fullmatch(folder):
                key = f"{self.prefix}roots/{folder}/{OWNER_FILE}"
                try:
                    body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    found.append((folder, json.loads(body)))
                except Exception:
                    if everyone:
                        found.append((folder, None))
        return found

    def roots_in(self, folder: str) -> list[tuple[str, float]]:
        return [
            (key.rsplit("/", 1)[1], mtime)
            for key, mtime in self._list(f"roots/{folder}/")
            if _HASH.fullmatch(key.rsplit("/", 1)[1])
        ]

    def drop_root(self, folder: str, digest: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=f"{self.prefix}roots/{folder}/{digest}")

    def blob_list(self) -> Iterator[tuple[str, float]]:
        for key, mtime in self._list("blobs/"):
            name = key.rsplit("/", 1)[1]
            if _HASH.fullmatch(name):
                yield name, mtime

    def drop_blob(self, digest: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._blob_key(digest))
        self.path(digest).unlink(missing_ok=True)

    def tidy(self, before: float) -> None:
        """An owner.json whose session has no root left goes; so do the cache's temporaries."""
        super().tidy(before)
        for folder, _ in self.owners(everyone=True):
            if not self.roots_in(folder):
                key = f"{self.prefix}roots/{folder}/{OWNER_FILE}"
                self.s3.delete_object(Bucket=self.bucket, Key=key)


def s3_store(spec: str, cache: Path) -> S3BlobStore:
    """The store named by ``s3://bucket/prefix``."""
    bucket, _, prefix = spec.removeprefix("s3://").partition("/")
    client = None
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
    return S3BlobStore(bucket, prefix, cache, client)
