"""What the sandbox costs: session start and per call, isolated (bwrap) vs ``isolation: none``.

.venv/bin/python -m bench.isolation [--samples 30]

Two views, each interleaving both modes sample by sample so they meet the same machine moment:
- the backend alone (no Temporal): a shell / interpreter started and ready, one call on it;
- end to end on the embedded dev server with a real worker: ``create_session`` -> first result,
  and one ``execute`` on a live session.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from temporalio.client import Client

from backends.interpreter import Interpreter
from backends.jail_settings import jail_python
from backends.process_config import process_config
from backends.shell import Shell
from bench.measure import stats
from bench.server import start_embedded
from client import Sandbox
from runtime.payload_store import data_converter
from tests.processes import WorkerProcess

MODES: dict[str, dict[str, Any]] = {"bwrap": {}, "none": {"isolation": "none"}}
#: For code, the sandbox may run another interpreter than the worker's (when uid 65534 cannot
#: read the worker's): this mode runs that same one without a sandbox, for a like-for-like figure.
SAME_PYTHON = "none, sandbox's python"
CALLS = {"bash": ("bash:run", {"command": "echo hi"}), "code": ("code:execute", {"code": "1+1"})}


async def _ms(op: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await op()
    return (time.perf_counter() - started) * 1000


async def _backend_sample(kind: str, config: dict[str, Any]) -> tuple[float, list[float]]:
    """Start one shell or interpreter, call it 6 times; (start ms, the last 5 calls' ms)."""
    settings = process_config(config, TERM="dumb")
    proc: Shell | Interpreter
    if kind == "bash":
        proc = Shell(settings)
    else:
        python = config.get("python") or (
            jail_python(None)[0] if settings.jail.isolated else sys.executable
        )
        proc = Interpreter(python, settings)

    async def call() -> None:
        if isinstance(proc, Shell):
            await proc.run("echo hi", 10)
        else:
            await proc.run("1+1", 10)

    start = await _ms(proc.start)
    await call()
    calls = [await _ms(call) for _ in range(5)]
    await proc.close()
    return start, calls


async def backend_level(samples: int) -> dict[str, dict[str, Any]]:
    found: dict[str, list[float]] = {}
    for i in range(samples + 2):
        for kind in ("bash", "code"):
            modes = dict(MODES)
            if kind == "code":
                same = {"isolation": "none", "python": jail_python(None)[0]}
                modes[SAME_PYTHON] = same
            for mode, config in modes.items():
                start, calls = await _backend_sample(kind, config)
                if i >= 2:  # warm-up
                    found.setdefault(f"{kind} start ({mode})", []).append(start)
                    found.setdefault(f"{kind} call ({mode})", []).extend(calls)
    return {name: stats(values) for name, values in found.items()}


async def _first_result(client: Client, kind: str, config: dict[str, Any]) -> float:
    """create_session -> first result on a fresh sandbox (ms); the session is destroyed after."""
    tool, params = CALLS[kind]
    sb = Sandbox(f"bench-new-{uuid.uuid4().hex[:8]}", client=client)
    started = time.perf_counter()
    await sb.create_session(kind, config)
    result = await sb.execute(tool, params)
    took = (time.perf_counter() - started) * 1000
    assert result["code"] == 0, result
    await sb.destroy_session(kind)
    return took


async def end_to_end(samples: int) -> dict[str, dict[str, Any]]:
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db", data_converter())
        # Its "none" mode is a trusted local session: the worker's operator allows it.
        worker = await WorkerProcess.start(
            env.client.service_client.config.target_host,
            args=["--session-allow", "isolation=none"],
        )
        try:
            live: dict[tuple[str, str], Sandbox] = {}
            for kind in CALLS:
                for mode, config in MODES.items():
                    sb = Sandbox(f"bench-live-{uuid.uuid4().hex[:8]}", client=env.client)
                    await sb.create_session(kind, config)
                    live[(kind, mode)] = sb
            for i in range(samples + 3):
                for kind, (tool, params) in CALLS.items():
                    for mode, config in MODES.items():
                        created = await _first_result(env.client, kind, config)
                        call = await _ms(partial(live[(kind, mode)].execute, tool, params))
                        if i >= 3:
                            first = f"{kind} create_session -> first result ({mode})"
                            found.setdefault(first, []).append(created)
                            found.setdefault(f"{kind} execute ({mode})", []).append(call)
            for sb in live.values():
                await sb.shutdown_server()
        finally:
            await worker.stop()
            await env.shutdown()
    return {name: stats(values) for name, values in found.items()}


def _print(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print(title)
    for name, row in rows.items():
        line = f"  {name:48} p50 {row['p50_ms']:8.2f} ms   p95 {row['p95_ms']:8.2f} ms"
        print(line)
        if "(bwrap)" not in name:
            continue
        for other in ("none", SAME_PYTHON):
            base = rows.get(name.replace("(bwrap)", f"({other})"))
            if base:
                extra = row["p50_ms"] - base["p50_ms"]
                ratio = row["p50_ms"] / base["p50_ms"]
                print(f"      bwrap vs {other}: {extra:+.2f} ms, {ratio:.2f}x")


async def main(samples: int) -> None:
    _print("backend alone (no Temporal)", await backend_level(samples))
    _print("end to end (embedded dev server, one worker)", await end_to_end(samples))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    asyncio.run(main(parser.parse_args().samples))
