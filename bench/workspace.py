"""What the durable workspace costs, backend alone: `.venv/bin/python -m bench.workspace`.

Side by side, one run: for workspaces of 8 MB, 100 MB and 500 MB (a virtual environment, a git
repository of 300 source files in two commits, and random data files to the size), the first
snapshot, then the snapshot after a one-file change (p50, p95), a call that changed nothing, and
the restore into a fresh sandbox (a lost worker's replacement, a fork). Then a small file's write
and read. The store is a temporary folder (``$SESSIONS_WORKSPACE_STORE``). ``--quick``: 8 MB only.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from backends.bash import BashBackend
from backends.host import BackendHost

SIZES_MB = (8, 100, 500)
CHANGES = 30
RESTORES = 3
#: A venv (~25 MB, ~2000 entries with pip), a git repository, data files to ``{data}`` MB.
MAKE = (
    "set -e; cd /workspace; rm -rf /workspace/* /workspace/.[!.]*; {venv}"
    "git init -q repo; cd repo; git config user.email b@example.com; git config user.name b; "
    'mkdir src; for i in $(seq 1 300); do seq 1 $((i * 3)) | sed "s/^/line $i /" > src/m$i.py; '
    'done; git add -A; git commit -qm one; for i in $(seq 1 50); do echo "# $i" >> src/m$i.py; '
    "done; git commit -qam two; cd ..; mkdir data; "
    "for i in $(seq 1 {files}); do head -c {chunk} /dev/urandom > data/b$i; done; "
    "du -sb /workspace | cut -f1; find /workspace | wc -l"
)


async def _timed(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _size(backend: BashBackend, host: BackendHost, megabytes: int) -> str:
    info = await backend.initialize("bench", {})
    others: list[dict[str, Any]] = []
    try:
        venv = "python3 -m venv venv >/dev/null; " if megabytes >= 100 else ""
        base = 25 if venv else 1
        data = max(1, megabytes - base)
        files = max(1, data // 10)
        command = MAKE.format(venv=venv, files=files, chunk=data * 1_000_000 // files)
        made = await host.invoke("bash:run", {"command": command, "timeout": 600}, info)
        total, entries = (int(x) for x in made.data["stdout"].split())
        workspace = info["workspace"]
        started = time.perf_counter()
        await backend.snapshot(info)
        first = (time.perf_counter() - started) * 1000
        await asyncio.sleep(0.3)  # past the racy window: the next snapshots hash only changes

        async def change() -> None:  # content no other size made: each change is new
            command = f"echo change {megabytes} $RANDOM$RANDOM >> /workspace/repo/src/m1.py"
            await host.invoke("bash:run", {"command": command}, info)

        snaps, unchanged, stored, stored_bytes = [], [], [], []
        latest: dict[str, Any] = {}
        for _ in range(CHANGES):
            await change()
            started = time.perf_counter()
            snapshot = await backend.snapshot(info)
            snaps.append((time.perf_counter() - started) * 1000)
            assert snapshot is not None, "a change makes a snapshot"
            latest = snapshot
            stored.append(workspace.last.get("blobs_new", 0))
            stored_bytes.append(workspace.last.get("bytes_new", 0))
            await host.invoke("bash:run", {"command": "true"}, info)
            started = time.perf_counter()
            assert await backend.snapshot(info) is None
            unchanged.append((time.perf_counter() - started) * 1000)
        restores = []
        for _ in range(RESTORES):
            other = await backend.initialize("bench", {})
            others.append(other)
            started = time.perf_counter()
            await backend.restore(other, latest)
            restores.append((time.perf_counter() - started) * 1000)
        return (
            f"| {total / 1e6:.0f} MB, {entries} entries | {first:.0f} ms | "
            f"{statistics.median(snaps):.1f} / {_p(snaps, 0.95):.1f} ms | "
            f"{statistics.median(unchanged):.1f} ms | {max(stored)} blobs, "
            f"{statistics.median(stored_bytes) / 1000:.1f} kB | "
            f"{statistics.median(restores):.0f} ms |"
        )
    finally:
        for other in others:
            await backend.cleanup("bench", other)
        await backend.cleanup("bench", info)


async def main() -> None:
    sizes = SIZES_MB[:1] if "--quick" in sys.argv else SIZES_MB
    with tempfile.TemporaryDirectory(prefix="bench-workspace-") as store:
        os.environ["SESSIONS_WORKSPACE_STORE"] = store
        backend = BashBackend()
        host = BackendHost([backend])
        print(
            "| workspace | first snapshot | one-file change: snapshot p50 / p95 | "
            "nothing changed | stored per change | restore (p50) |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for megabytes in sizes:
            print(await _size(backend, host, megabytes), flush=True)
        info = await backend.initialize("bench", {})
        write = {"path": "small.txt", "content": "x" * 1000}
        writes = await _timed(lambda: host.invoke("bash:write_file", write, info), 50)
        read = {"path": "small.txt"}
        reads = await _timed(lambda: host.invoke("bash:read_file", read, info), 50)
        print(
            f"\nwrite_file 1 kB: {statistics.median(writes):.2f} ms; "
            f"read_file 1 kB: {statistics.median(reads):.2f} ms"
        )
        await backend.cleanup("bench", info)


if __name__ == "__main__":
    asyncio.run(main())
