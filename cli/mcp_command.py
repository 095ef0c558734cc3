"""`durable-sessions mcp`: the sessions' tools for MCP clients (integrations/mcp_server.py)."""

from __future__ import annotations

import argparse
import os
import uuid
from typing import Any

from contract import DEFAULT_TASK_QUEUE


def add_parser(sub: Any) -> None:
    m = sub.add_parser(
        "mcp",
        help="an MCP server whose tools run on durable sessions (stdio or streamable HTTP)",
        description=(
            "Serve the installed backends' tools to MCP clients. A call runs on a durable session "
            "of the sandbox it names (sandbox_id), or of the client's MCP session."
        ),
    )
    m.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    m.add_argument("--host", default="127.0.0.1", help="HTTP: the address to listen on")
    m.add_argument("--port", type=int, default=8000, help="HTTP: the port (default 8000)")
    m.add_argument("--path", default="/mcp", help="HTTP: the endpoint path (default /mcp)")
    m.add_argument("--address", help="Temporal address (default: $TEMPORAL_ADDRESS)")
    m.add_argument("--namespace", help="namespace (default: $TEMPORAL_NAMESPACE)")
    m.add_argument(
        "--task-queue", default=os.environ.get("SESSIONS_TASK_QUEUE", DEFAULT_TASK_QUEUE)
    )
    m.add_argument(
        "--backends", nargs="+", metavar="NAME", help="offer these backends' tools (default: all)"
    )
    m.add_argument(
        "--sandbox-id",
        help="stdio: the client's sandbox (default: a new one per server process)",
    )
    m.add_argument("--user-id", help="the owner named on every request")


async def run(args: argparse.Namespace) -> int:
    from integrations.gateway import SessionGateway
    from integrations.mcp_server import SessionsMCPServer, serve

    gateway = SessionGateway(
        address=args.address, namespace=args.namespace, task_queue=args.task_queue
    )
    default_sandbox = None
    if args.transport == "stdio":  # one client per process: its session is the process
        default_sandbox = args.sandbox_id or f"mcp-{uuid.uuid4().hex[:16]}"
    server = SessionsMCPServer(
        gateway,
        resource_types=args.backends,
        default_sandbox=default_sandbox,
        user_id=args.user_id,
    )
    await serve(server, transport=args.transport, host=args.host, port=args.port, path=args.path)
    return 0
