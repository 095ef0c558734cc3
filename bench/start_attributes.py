"""What a session's start attributes cost a bare workflow: update-with-start + local activity on
the floor's workflow, plain and with what our client sends at a start (four search attributes and
a static summary), interleaved.

.venv/bin/python -m bench.start_attributes [samples]   # prints both p50s
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.floor import FLOOR_QUEUE, FloorWorkflow, start_floor, start_floor_worker
from bench.server import start_embedded
from client.transport import start_search_attributes
from contract import SessionInput

#: What a temporary session's start carries (client/transport.py).
SESSION_START: dict[str, Any] = {
    "search_attributes": start_search_attributes(
        SessionInput(sandbox_id="bench", resource_type="bash", temporary=True)
    ),
    "static_summary": "temporary bash session of sandbox bench",
}


async def _one(client: Client, pinned: str, extra: dict[str, Any]) -> float:
    started = time.perf_counter()
    handle = await start_floor(client, pinned, FloorWorkflow.with_local_activity, "x", **extra)
    took = (time.perf_counter() - started) * 1000
    await handle.execute_update(FloorWorkflow.finish)  # untimed
    return took


async def main(samples: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db")
        address = env.client.service_client.config.target_host
        pinned = f"{FLOOR_QUEUE}/pinned-{uuid.uuid4().hex[:6]}"
        worker = await start_floor_worker(address, pinned)
        try:
            kinds = {"plain": {}, "with a session's start attributes": SESSION_START}
            taken: dict[str, list[float]] = {name: [] for name in kinds}
            for i in range(samples + 5):
                order = list(kinds) if i % 2 else list(kinds)[::-1]
                for name in order:
                    took = await _one(env.client, pinned, kinds[name])
                    if i >= 5:  # warm-up
                        taken[name].append(took)
            for name, values in taken.items():
                p50 = statistics.median(values)
                print(f"update-with-start + local activity, {name}: p50 {p50:.1f} ms")
        finally:
            worker.terminate()
            await worker.wait()
            await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
