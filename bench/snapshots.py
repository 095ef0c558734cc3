"""Issue 26's figures side by side in one run: the workspace snapshot after a one-file change
at 8, 100 and 500 MB, unchanged and restore (:mod:`bench.workspace`, the backend alone), then
a fork of 200 MB into 8 children and the resume of a suspended 100 MB session
(:mod:`bench.fork`, on an embedded server and a worker process).

    .venv/bin/python -m bench.snapshots [--runs 3]
"""

from __future__ import annotations

import asyncio
import time

from bench import fork, workspace


async def main() -> None:
    started = time.perf_counter()
    print("## Workspace snapshots (backend alone)\n")
    await workspace.main()
    print("\n## Fork and resume (embedded server, one worker process)\n")
    await fork.main()
    print(f"\none run, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
