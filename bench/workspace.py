"""What the durable workspace costs, backend alone: `.venv/bin/python -m bench.workspace`.

Per call: the fingerprint walk that finds nothing changed (empty workspace, 200 and 2000 files);
per change: packing (tar + gzip level 1 + base64) a source-like tree and an incompressible one at
the default cap, and unpacking it into a fresh sandbox; a small file's write and read.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from backends.bash import BashBackend
from backends.host import BackendHost

SOURCE_TREE = (
    "mkdir -p src && for i in $(seq 1 200); do "
    'for j in $(seq 1 40); do echo "def function_$j(x): return x * $i + $j  # line"; done '
    "> src/module_$i.py; done"
)
RANDOM_8MB = "head -c 8000000 /dev/urandom > blob"


async def _timed(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _p50(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} ms"


async def main() -> None:
    backend = BashBackend()
    host = BackendHost([backend])

    async def fresh() -> dict[str, Any]:
        return await backend.initialize("bench", {})

    info = await fresh()

    async def call_and_snapshot(command: str = "echo hi") -> None:
        await host.invoke("bash:run", {"command": command}, info)
        await backend.snapshot(info)

    async def call_only() -> None:
        await host.invoke("bash:run", {"command": "echo hi"}, info)

    await call_and_snapshot()
    print("| what | p50 |")
    print("| --- | --- |")
    print(f"| bash call (`echo hi`), no snapshot | {_p50(await _timed(call_only, 200))} |")
    print(
        "| bash call + snapshot, empty workspace, unchanged | "
        f"{_p50(await _timed(call_and_snapshot, 200))} |"
    )
    for files in (200, 2000):
        await call_and_snapshot(
            f"rm -rf /workspace/*; mkdir -p /workspace/t; cd /workspace/t; "
            f"seq 1 {files} | while read i; do echo $i > f$i; done; cd /workspace"
        )
        times = await _timed(call_and_snapshot, 100)
        print(f"| bash call + snapshot, {files} files, unchanged | {_p50(times)} |")
    for label, command in (
        ("200 source files", SOURCE_TREE),
        ("8 MB of random bytes", RANDOM_8MB),
    ):
        await call_and_snapshot("rm -rf /workspace/* /workspace/.[!.]*; cd /workspace")
        await host.invoke("bash:run", {"command": command}, info)
        packs, inside, restores = [], [], []
        for _ in range(5):
            await host.invoke("bash:run", {"command": "touch -m /workspace/changed"}, info)
            snapshot = await backend.snapshot(info)
            assert snapshot is not None
            entry = snapshot["workspace"]
            last = info["workspace"].last
            packs.append(last["took_ms"])
            inside.append(last["pack_ms"])
            other = await fresh()
            started = time.perf_counter()
            await backend.restore(other, snapshot)
            restores.append((time.perf_counter() - started) * 1000)
            await backend.cleanup("bench", other)
        print(
            f"| pack {label}: {entry['raw_bytes']} bytes of files -> {entry['bytes']} bytes "
            f"gzip, {last['encoded_bytes']} base64 | {_p50(packs)} (in the sandbox "
            f"{_p50(inside)}); restore {_p50(restores)} |"
        )
    await call_and_snapshot("rm -rf /workspace/*")
    write = {"path": "small.txt", "content": "x" * 1000}
    times = await _timed(lambda: host.invoke("bash:write_file", write, info), 50)
    print(f"| write_file 1 kB | {_p50(times)} |")
    read = {"path": "small.txt"}
    times = await _timed(lambda: host.invoke("bash:read_file", read, info), 50)
    print(f"| read_file 1 kB | {_p50(times)} |")
    await backend.cleanup("bench", info)


if __name__ == "__main__":
    asyncio.run(main())
