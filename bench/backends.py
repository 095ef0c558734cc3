"""Latency of the built-in backends' tools through Sandbox, on the embedded dev server.

.venv/bin/python -m bench.backends    # prints p50 / p95 of each, 50 samples after warm-up
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.measure import stats, timed
from bench.server import start_embedded
from client import Sandbox
from runtime.payload_store import data_converter
from tests.processes import WorkerProcess

SAMPLES = 50


async def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db", data_converter())
        worker = await WorkerProcess.start(env.client.service_client.config.target_host)
        try:
            sandbox = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=env.client)
            await sandbox.warmup(["rag"])
            await sandbox.create_session("code")
            rows = {
                "rag:search (warm, top_k 5)": stats(
                    await timed(
                        SAMPLES,
                        lambda i: sandbox.execute(
                            "rag:search", {"query": "session timeout interpreter", "top_k": 5}
                        ),
                    )
                ),
                "code:execute 1+1": stats(
                    await timed(SAMPLES, lambda i: sandbox.execute("code:execute", {"code": "1+1"}))
                ),
                "bash:run echo (no bash session: temporary)": stats(
                    await timed(
                        SAMPLES, lambda i: sandbox.execute("bash:run", {"command": "echo hi"})
                    )
                ),
            }
            await sandbox.shutdown_server()
        finally:
            await worker.stop()
            await env.shutdown()
    return rows


if __name__ == "__main__":
    for name, row in asyncio.run(main()).items():
        print(f"{name:32} p50 {row['p50_ms']:8.2f} ms   p95 {row['p95_ms']:8.2f} ms")
