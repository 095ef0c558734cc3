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
    m.add_argument(
        "--token",
        help="HTTP: the bearer token every request must send (default: "
        "$DURABLE_SESSIONS_MCP_TOKEN, which other users cannot read from the process list); "
        "required to listen beyond loopback",
    )
    m.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="HTTP: another Host header value to answer (a reverse proxy's name); repeatable. "
        "Loopback names and the listening address are always allowed",
    )
    m.add_argument(
        "--max-body-bytes",
        type=int,
        default=4 * 1024 * 1024,  # mcp_http.DEFAULT_MAX_BODY_BYTES, not imported: it loads mcp
        help="HTTP: the largest request body (default %(default)s); larger ones answer 413",
    )
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
    from integrations.mcp_http import TOKEN_ENV, HttpOptions, refusal
    from integrations.mcp_server import SessionsMCPServer, serve

    http = HttpOptions(
        host=args.host,
        port=args.port,
        path=args.path,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        allowed_hosts=args.allowed_host,
        max_body_bytes=args.max_body_bytes,
    )
    problem = refusal(http) if args.transport == "http" else None
    if problem is not None:  # before connecting to anything: a clear message, exit 1
        raise SystemExit(f"durable-sessions mcp: {problem}")
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
    await serve(server, transport=args.transport, http=http)
    return 0
