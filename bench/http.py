"""What the HTTP API adds to a call: `execute` over HTTP against the Python client, on the same
session, alternating call by call in one run (latency on these machines shifts in steps; pairs
meet the same moment).

.venv/bin/python -m bench.http [PAIRS] [--beside-worker]   # default 200 pairs after a warm-up

The API runs as `durable-sessions http` in its own process with an API key (its own Temporal
connection, authentication on), or with ``--beside-worker`` in the worker's process on the
worker's connection, as `./run.sh` runs it. The bench process sends HTTP with a kept-alive aiohttp
session, and Python calls with `client.Sandbox` as the key's user. Target: the HTTP hop adds at
most 2 ms at p50.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.measure import stats
from bench.server import start_embedded
from client import Sandbox
from http_api.keys import new_key
from runtime.payload_store import data_converter
from tests.devserver import free_port
from tests.processes import ROOT, WorkerProcess

COMMAND = {"command": "true"}


#: The worker and the API in one process on one connection, as `serve` runs them.
BESIDE_WORKER = """
import asyncio, sys
from http_api.app import Limits
from http_api.server import HttpSettings, serve_http
from runtime.connection import connect
from worker import run_worker

async def main():
    client = await connect(sys.argv[1])
    stop = asyncio.Event()
    settings = HttpSettings(port=int(sys.argv[2]), limits=Limits(rate=10000, burst=10000))
    await asyncio.gather(run_worker(client, stop=stop), serve_http(settings, client, stop=stop))

asyncio.run(main())
"""


async def _start_api(
    address: str, line: str, beside_worker: bool
) -> tuple[asyncio.subprocess.Process, str]:
    env = {**os.environ, "DURABLE_SESSIONS_API_KEYS": line, "LOG_LEVEL": "WARNING"}
    port = str(free_port())
    if beside_worker:
        args = ["-c", BESIDE_WORKER, address, port]
    else:
        args = ["-m", "cli", "http", "--address", address, "--port", port]
        args += ["--rate", "10000", "--burst", "10000"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=str(ROOT), env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    while True:
        line_out = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line_out:
            raise RuntimeError("the HTTP API exited before it listened")
        if line_out.startswith("HTTP API"):
            return proc, line_out.split(" on ", 1)[1].split()[0]


async def main(pairs: int, beside_worker: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db", data_converter())
        address = env.client.service_client.config.target_host
        worker = None if beside_worker else await WorkerProcess.start(address)
        key, line = new_key("bench")
        api, url = await _start_api(address, line, beside_worker)
        worker_id = f"bench-http-{uuid.uuid4().hex[:8]}"
        headers = {"Authorization": f"Bearer {key}", "X-Worker-ID": worker_id}
        try:
            async with aiohttp.ClientSession(headers=headers) as http:

                async def over_http() -> dict[str, Any]:
                    body = {"worker_id": worker_id, "action": "bash:run", "params": COMMAND}
                    async with http.post(f"{url}/api/v1/execute", json=body) as response:
                        return dict(await response.json())

                async def health() -> None:
                    async with http.get(f"{url}/health") as response:
                        await response.read()

                create = {"worker_id": worker_id, "resource_type": "bash"}
                async with http.post(f"{url}/api/v1/session/create", json=create) as response:
                    session_id = (await response.json())["data"]["session_id"]
                python = Sandbox(worker_id, client=env.client, user_id="bench")
                for _ in range(10):  # warm-up: connections, caches, the shell
                    assert (await over_http())["code"] == 0
                    assert (await python.execute("bash:run", COMMAND))["code"] == 0
                via_http: list[float] = []
                via_python: list[float] = []
                hops: list[float] = []
                for i in range(pairs):
                    order = [(over_http, via_http), (_python(python), via_python)]
                    for call, samples in order if i % 2 == 0 else reversed(order):
                        started = time.perf_counter()
                        answer = await call()
                        samples.append((time.perf_counter() - started) * 1000)
                        assert answer["code"] == 0 and answer["meta"]["session_id"] == session_id
                    started = time.perf_counter()
                    await health()
                    hops.append((time.perf_counter() - started) * 1000)
                await python.destroy_session("bash")
        finally:
            api.terminate()
            await api.wait()
            if worker is not None:
                await worker.stop()
            await env.shutdown()
    differences = [h - p for h, p in zip(via_http, via_python, strict=True)]
    http_stats, python_stats = stats(via_http), stats(via_python)
    return {
        "API process": "the worker's" if beside_worker else "its own",
        "pairs": pairs,
        "execute over HTTP": http_stats,
        "execute, Python client": python_stats,
        "HTTP - Python, p50 of each": round(http_stats["p50_ms"] - python_stats["p50_ms"], 2),
        "HTTP - Python, median of pairs": round(statistics.median(differences), 2),
        "GET /health round trip": stats(hops),
    }


def _python(sandbox: Sandbox) -> Any:
    return lambda: sandbox.execute("bash:run", COMMAND)


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    result = asyncio.run(
        main(int(numbers[0]) if numbers else 200, beside_worker="--beside-worker" in sys.argv)
    )
    for name, value in result.items():
        print(f"{name:34} {value}")
    sys.stdout.flush()
    os._exit(0)  # skip finalization, where the SDK's native threads can abort the process
