"""What the durable workspace costs, backend alone: `.venv/bin/python -m bench.workspace`.

Side by side, one run: for workspaces of 8 MB, 100 MB and 500 MB (a virtual environment, a git
repository of 300 source files in two commits, and random data files to the size), the first
snapshot, then the snapshot after a one-file change (p50, p95), a call that changed nothing, and
the restore into a fresh sandbox (a lost worker's replacement, a fork), the sizes interleaved
round by round. Then a small file's write and read. The store is a temporary folder
(``$SESSIONS_WORKSPACE_STORE``). ``--quick``: 8 MB only.
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


class _Size:
    """One workspace size: its session, what it measured."""

    def __init__(self, backend: BashBackend, host: BackendHost, megabytes: int) -> None:
        self.backend, self.host, self.megabytes = backend, host, megabytes
        self.info: dict[str, Any] = {}
        self.others: list[dict[str, Any]] = []
        self.snaps: list[float] = []
        self.unchanged: list[float] = []
        self.restores: list[float] = []
        self.stored: list[int] = []
        self.stored_bytes: list[int] = []
        self.latest: dict[str, Any] = {}
        self.first = 0.0
        self.total = self.entries = 0

    async def make(self) -> None:
        self.info = await self.backend.initialize("bench", {})
        venv = "python3 -m venv venv >/dev/null; " if self.megabytes >= 100 else ""
        data = max(1, self.megabytes - (25 if venv else 1))
        files = max(1, data // 10)
        command = MAKE.format(venv=venv, files=files, chunk=data * 1_000_000 // files)
        made = await self.host.invoke("bash:run", {"command": command, "timeout": 600}, self.info)
        self.total, self.entries = (int(x) for x in made.data["stdout"].split())
        started = time.perf_counter()
        await self.backend.snapshot(self.info)
        self.first = (time.perf_counter() - started) * 1000

    async def change(self) -> None:
        """A one-file change (content no other size made), its snapshot, then a call that
        changes nothing and its snapshot."""
        command = f"echo change {self.megabytes} $RANDOM$RANDOM >> /workspace/repo/src/m1.py"
        await self.host.invoke("bash:run", {"command": command}, self.info)
        started = time.perf_counter()
        snapshot = await self.backend.snapshot(self.info)
        self.snaps.append((time.perf_counter() - started) * 1000)
        assert snapshot is not None, "a change makes a snapshot"
        self.latest = snapshot
        last = self.info["workspace"].last
        self.stored.append(last.get("blobs_new", 0))
        self.stored_bytes.append(last.get("bytes_new", 0))
        await self.host.invoke("bash:run", {"command": "true"}, self.info)
        started = time.perf_counter()
        assert await self.backend.snapshot(self.info) is None
        self.unchanged.append((time.perf_counter() - started) * 1000)

    async def restore(self) -> None:
        other = await self.backend.initialize("bench", {})
        self.others.append(other)
        started = time.perf_counter()
        await self.backend.restore(other, self.latest)
        self.restores.append((time.perf_counter() - started) * 1000)

    def row(self) -> str:
        return (
            f"| {self.total / 1e6:.0f} MB, {self.entries} entries | {self.first:.0f} ms | "
            f"{statistics.median(self.snaps):.1f} / {_p(self.snaps, 0.95):.1f} ms | "
            f"{statistics.median(self.unchanged):.1f} ms | {max(self.stored)} blobs, "
            f"{statistics.median(self.stored_bytes) / 1000:.1f} kB | "
            f"{statistics.median(self.restores):.0f} ms |"
        )

    async def close(self) -> None:
        for info in [*self.others, self.info]:
            if info:
                await self.backend.cleanup("bench", info)


async def _interleaved(sizes: list[_Size], step: str, rounds: int) -> None:
    """``step`` of every size in turn, the order rotated each round: a shared machine's load
    shifts during a run, and weighs on every size alike."""
    for round_ in range(rounds):
        for size in sizes[round_ % len(sizes) :] + sizes[: round_ % len(sizes)]:
            await getattr(size, step)()


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
        measured = [_Size(backend, host, megabytes) for megabytes in sizes]
        try:
            for size in measured:
                await size.make()
            await asyncio.sleep(0.3)  # past the racy window: snapshots hash only changes
            await _interleaved(measured, "change", CHANGES)
            await _interleaved(measured, "restore", RESTORES)
            for size in measured:
                print(size.row())
        finally:
            for size in measured:
                await size.close()
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
