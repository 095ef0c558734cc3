"""Cost of an MCP tool call through a session beside calling the same server directly.

.venv/bin/python -m bench.mcp [SAMPLES]    # default 50 each, after 5 warm-up calls

Three rows, each the same tool call (``echo`` of the tests' Python server, and the memory
server's ``read_graph``), interleaved so that they see the same machine:
- direct: the ``mcp`` package's stdio client on the server, started by this process (no jail);
- backend: :class:`backends.mcp.McpBackend` in this process (the jail and its pipes, no Temporal);
- session: ``Sandbox.execute("mcp:call")`` on the embedded dev server and a worker (everything);
- by name: the same through the session, called as AgentFlow does, ``mcp:<server>.<tool>``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from backends.mcp import ROOTS_ENV, SERVERS_DIR, McpBackend
from bench.measure import stats
from bench.server import start_embedded
from client import Sandbox
from runtime.payload_store import data_converter
from tests.processes import WorkerProcess

ECHO = Path(__file__).parents[1] / "tests" / "mcp_servers" / "echo_server.py"
MEMORY = SERVERS_DIR / "node_modules" / "@modelcontextprotocol" / "server-memory" / "dist"
CALLS = {"echo": ("echo", {"text": "hi"}), "memory": ("read_graph", {})}


def _config(task: Path) -> dict[str, Any]:
    return {
        "task_dir": str(task),
        "enabled_servers": ["echo", "memory"],
        "server_configs": {
            "echo": {
                "type": "stdio",
                "params": {
                    "command": "/usr/bin/python3",
                    "args": ["${agent_workspace}/echo_server.py"],
                    "env": {"PYTHONPATH": "${local_servers_paths}/python"},
                },
            },
            "memory": {
                "type": "stdio",
                "params": {
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-memory"],
                    "env": {"MEMORY_FILE_PATH": "${agent_workspace}/memory.jsonl"},
                },
            },
        },
    }


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
        os.environ[ROOTS_ENV] = tmp  # the task directory's root, here and in the worker
        task = Path(tmp) / "task"
        (task / "initial_workspace").mkdir(parents=True)
        shutil.copy(ECHO, task / "initial_workspace" / "echo_server.py")
        direct_params = {
            "echo": StdioServerParameters(command=sys.executable, args=[str(ECHO)]),
            "memory": StdioServerParameters(
                command="node",
                args=[str(MEMORY / "index.js")],
                env={"MEMORY_FILE_PATH": str(Path(tmp) / "memory.jsonl")},
            ),
        }
        env = await start_embedded(Path(tmp) / "temporal.db", data_converter())
        worker = await WorkerProcess.start(env.client.service_client.config.target_host)
        backend = McpBackend()
        info = await backend.initialize("bench", _config(task))
        sandbox = Sandbox(f"bench-mcp-{uuid.uuid4().hex[:8]}", client=env.client)
        await sandbox.create_session("mcp", _config(task))
        rows: dict[str, dict[str, float]] = {}
        try:
            for server, (tool, arguments) in CALLS.items():
                async with (
                    stdio_client(direct_params[server]) as (read, write),
                    ClientSession(read, write) as direct,
                ):
                    await direct.initialize()

                    async def session_call(
                        s: str = server, t: str = tool, a: Any = arguments
                    ) -> None:
                        result = await sandbox.execute(
                            "mcp:call", {"server": s, "tool": t, "arguments": a}
                        )
                        assert result["code"] == 0, result

                    async def named_call(
                        s: str = server, t: str = tool, a: Any = arguments
                    ) -> None:
                        result = await sandbox.execute(f"mcp:{s}.{t}", dict(a))
                        assert result["code"] == 0, result

                    async def direct_call(d: ClientSession = direct, s: str = server) -> None:
                        await d.call_tool(CALLS[s][0], CALLS[s][1])

                    async def backend_call(s: str = server, t: str = tool) -> None:
                        await backend.call(t, s, CALLS[s][1], session_info=info)

                    paths: dict[str, Callable[[], Awaitable[Any]]] = {
                        "direct": direct_call,
                        "backend": backend_call,
                        "session": session_call,
                        "by name": named_call,
                    }
                    times = await _interleaved(samples, paths)
                for path, values in times.items():
                    rows[f"{server}.{tool}: {path}"] = stats(values)
            await sandbox.shutdown_server()
        finally:
            await backend.cleanup("bench", info)
            await worker.stop()
            await env.shutdown()
    return rows


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    for name, row in asyncio.run(main(count)).items():
        print(f"{name:28} p50 {row['p50_ms']:8.2f} ms   p95 {row['p95_ms']:8.2f} ms")
