"""The workspace store in a bucket (backends/workspace_s3.py), each host with its own cache.

No object storage runs here: the bucket is an in-memory stand-in for the few boto3 client calls
the store makes (a unit test of that one piece); the sandboxes, snapshots and restores are real.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backends.bash import BashBackend
from backends.host import BackendHost
from backends.workspace_s3 import S3BlobStore
from backends.workspace_store import sweep_store


class _Missing(Exception):
    response = {"Error": {"Code": "404"}}  # noqa: RUF012 - as botocore's ClientError has it


class FakeS3:
    """The boto3 S3 client calls the store makes, on a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, float]] = {}
        self.downloads = 0

    def _get(self, key: str) -> bytes:
        if key not in self.objects:
            raise _Missing(key)
        return self.objects[key][0]

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        return {"ContentLength": len(self._get(Key))}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803
        self.objects[Key] = (bytes(Body), time.time())

    def upload_file(self, Filename: str, Bucket: str, Key: str) -> None:  # noqa: N803
        self.objects[Key] = (Path(Filename).read_bytes(), time.time())

    def download_file(self, Bucket: str, Key: str, Filename: str) -> None:  # noqa: N803
        Path(Filename).write_bytes(self._get(Key))
        self.downloads += 1

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        body = self._get(Key)

        class _Body:
            def read(self) -> bytes:
                return body

        return {"Body": _Body()}

    def delete_object(self, Bucket: str, Key: str) -> None:  # noqa: N803
        self.objects.pop(Key, None)

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        objects = self.objects

        class _Pages:
            def paginate(self, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:  # noqa: N803
                keys = sorted(k for k in objects if k.startswith(Prefix))
                contents = [
                    {"Key": k, "LastModified": datetime.fromtimestamp(objects[k][1], UTC)}
                    for k in keys
                ]
                yield {"Contents": contents}

        return _Pages()

    def age(self, seconds: float) -> None:
        self.objects = {k: (v, t - seconds) for k, (v, t) in self.objects.items()}


@pytest.fixture
async def hosts(tmp_path: Path) -> AsyncIterator[Any]:
    """Two hosts' bash backends, each its cache in front of one bucket."""
    s3 = FakeS3()
    backend = BashBackend()
    host = BackendHost([backend])
    made: list[dict[str, Any]] = []

    async def session(cache: str) -> dict[str, Any]:
        info = await backend.initialize("w", {})
        info["workspace"]._store = S3BlobStore("bucket", "ws", tmp_path / cache, s3)
        made.append(info)
        return info

    async def run(info: dict[str, Any], command: str) -> str:
        outcome = await host.invoke("bash:run", {"command": command, "timeout": 60}, info)
        assert outcome.code == 0 and outcome.data["return_code"] == 0, outcome
        return str(outcome.data["stdout"])

    yield s3, backend, session, run
    for info in made:
        await backend.cleanup("w", info)


LISTING = "cd /workspace && find . -printf '%p %y %m %s %l\\n' | sort && cat -A src/*"


async def test_a_snapshot_in_a_bucket_restores_on_another_host_fetching_only_what_it_lacks(
    hosts: Any,
) -> None:
    s3, backend, session, run = hosts
    parent = await session("host-a")
    await run(parent, "mkdir src && echo one > src/a && echo two > src/b && ln -s src/a l")
    snapshot = await backend.snapshot(parent)
    assert snapshot is not None and snapshot["workspace"]["format"] == "cas"
    blobs = {k for k in s3.objects if k.startswith("ws/blobs/")}
    assert len(blobs) == 4  # a, b, the trees of src and of the root
    expected = await run(parent, LISTING)

    fork = await session("host-b")  # another host: an empty cache
    await backend.restore(fork, snapshot)
    assert await run(fork, LISTING) == expected
    assert s3.downloads == 4
    again = await session("host-b")  # the same host again: it has them all now
    await backend.restore(again, snapshot)
    assert await run(again, LISTING) == expected and s3.downloads == 4
    assert {k for k in s3.objects if k.startswith("ws/blobs/")} == blobs  # nothing copied


async def test_the_bucket_is_swept_by_its_roots(hosts: Any) -> None:
    s3, backend, session, run = hosts
    parent = await session("host-a")
    await run(parent, "echo shared > kept && echo gone > dropped")
    first = await backend.snapshot(parent)
    store: S3BlobStore = parent["workspace"].store
    await run(parent, "rm dropped")
    second = await backend.snapshot(parent)
    assert first is not None and second is not None
    # A session restored from the second snapshot roots it under its own name.
    store.add_root(("server", "default", "fork"), second["workspace"]["manifest"])
    s3.age(7200)

    async def judge(owner: dict[str, Any] | None) -> float | None:
        return time.time()  # every root of no session (the parent's, here) goes; so does ours

    async def keep_forks(owner: dict[str, Any] | None) -> float | None:
        return None if owner is not None else time.time()

    removed = await sweep_store(store, keep_forks)
    assert removed == 2  # the first manifest's root tree, and "gone"
    assert "dropped" not in await run(parent, "ls")
    remaining = {k for k in s3.objects if k.startswith("ws/blobs/")}
    assert len(remaining) == 2  # "shared" and the second root tree
    assert await sweep_store(store, judge) == 2
    assert not any(k.startswith("ws/") for k in s3.objects)
