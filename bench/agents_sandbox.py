"""Cost of one ``exec`` through the OpenAI Agents SDK provider beside a direct ``bash:run``.

.venv/bin/python -m bench.agents_sandbox [SAMPLES]    # default 100 each, after 5 warm-up calls

Rows, each the command ``true`` in the same live bash session on the embedded dev server and a
worker, interleaved so that they see the same machine:
- bash:run: ``Sandbox.execute("bash:run", {"command": "true"})``, the public client;
- session.exec: ``DurableSessionsSandboxSession.exec("true")`` (the SDK's ``exec``: its command
  preparation, our provider's mapping to ``bash:run`` and back to an ``ExecResult``);
- exec_command tool: the SandboxAgent's shell tool invoked as the model would call it
  (``ExecCommandTool.run``: its output formatting on top of ``exec``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents.sandbox.capabilities.tools.shell_tool import ExecCommandArgs, ExecCommandTool

from bench.measure import stats
from bench.server import start_embedded
from client import Sandbox
from integrations.agents_sandbox import (
    DurableSessionsSandboxClient,
    DurableSessionsSandboxClientOptions,
)
from runtime.payload_store import data_converter
from tests.processes import WorkerProcess


async def _interleaved(
    samples: int, paths: dict[str, Callable[[], Awaitable[Any]]]
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(samples + 5):
        order = list(paths)
        order = order[i % len(order) :] + order[: i % len(order)]
        for name in order:
            started = time.perf_counter()
            await paths[name]()
            if i >= 5:
                times[name].append((time.perf_counter() - started) * 1000)
    return times


async def main(samples: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db", data_converter())
        worker = await WorkerProcess.start(env.client.service_client.config.target_host)
        provider = DurableSessionsSandboxClient(client=env.client)
        sandbox_id = f"bench-agents-{uuid.uuid4().hex[:8]}"
        options = DurableSessionsSandboxClientOptions(sandbox_id=sandbox_id)
        try:
            session = await provider.create(options=options)
            await session.start()
            direct = Sandbox(sandbox_id, client=env.client, destroy_on_exit=False)
            await direct.start()
            tool = ExecCommandTool(session=session)

            async def bash_run() -> None:
                answer = await direct.execute("bash:run", {"command": "true"})
                assert answer["code"] == 0, answer

            async def session_exec() -> None:
                assert (await session.exec("true")).exit_code == 0

            async def exec_command() -> None:
                assert "exited with code 0" in await tool.run(ExecCommandArgs(cmd="true"))

            paths: dict[str, Callable[[], Awaitable[Any]]] = {
                "bash:run (public client)": bash_run,
                "session.exec (provider)": session_exec,
                "exec_command tool (SandboxAgent)": exec_command,
            }
            times = await _interleaved(samples, paths)
            await provider.delete(session)
        finally:
            await worker.stop()
            await env.shutdown()
    return {name: stats(values) for name, values in times.items()}


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    print(json.dumps(asyncio.run(main(count)), indent=2))
