"""`durable-sessions http`: the HTTP API (AgentFlow's protocol, per-user API keys) on a Temporal
server; `durable-sessions http-key USER`: a new API key and the line that configures it.
`serve` starts the same API beside its worker."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from temporalio.client import Client

from contract import DEFAULT_TASK_QUEUE
from http_api.app import Limits
from http_api.keys import KEYS_FILE_ENV, KeyStore, new_key
from http_api.server import DEFAULT_PORT, HttpSettings, serve_http
from runtime.connection import connect


def _limit_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """Where the API listens and the limits of keys that set none."""
    defaults = Limits()
    p.add_argument(f"--{prefix}host", default="127.0.0.1", help="address to listen on (with keys)")
    p.add_argument(f"--{prefix}port", type=int, default=DEFAULT_PORT, help="default %(default)s")
    p.add_argument(
        "--keys-file",
        default=os.environ.get(KEYS_FILE_ENV),
        help="API keys, one per line (see `durable-sessions http-key`); also from "
        "$DURABLE_SESSIONS_API_KEYS",
    )
    p.add_argument("--max-sessions", type=int, default=defaults.max_sessions,
                   help="live sessions per key (default %(default)s)")  # fmt: skip
    p.add_argument("--rate", type=float, default=defaults.rate,
                   help="requests a second per key (default %(default)s)")  # fmt: skip
    p.add_argument("--burst", type=int, default=defaults.burst,
                   help="requests a key may send at once (default %(default)s)")  # fmt: skip
    p.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                   help="largest request body (default %(default)s)")  # fmt: skip
    p.add_argument("--config-dir", type=Path,
                   help="the folder /api/v1/init/from-config may read (default: none)")  # fmt: skip


def add_parsers(sub: Any) -> None:
    h = sub.add_parser(
        "http",
        help="the HTTP API (AgentFlow's protocol) on the durable sessions",
        description=__doc__,
    )
    _limit_options(h)
    h.add_argument("--address", help="Temporal address (default: $TEMPORAL_ADDRESS)")
    h.add_argument("--namespace", help="namespace (default: $TEMPORAL_NAMESPACE)")
    h.add_argument(
        "--task-queue", default=os.environ.get("SESSIONS_TASK_QUEUE", DEFAULT_TASK_QUEUE)
    )
    k = sub.add_parser("http-key", help="make an API key for the HTTP API")
    k.add_argument("user_id", help="the user the key acts for (owner of its sessions)")
    k.add_argument("--admin", action="store_true", help="reaches every user's sessions")
    k.add_argument("--sessions", type=int, help="live sessions this key may hold")
    k.add_argument("--rate", type=float, help="requests a second")
    k.add_argument("--burst", type=int, help="requests at once")
    k.add_argument(
        "--allow",
        default="",
        metavar="TOKENS",
        help="what its sessions may ask of their sandbox above the defaults, e.g. "
        "'network,memory_mb=4096' (docs/security.md; default: nothing)",
    )


def add_serve_options(s: argparse.ArgumentParser) -> None:
    """`serve`'s options for the API it starts beside the worker."""
    _limit_options(s, prefix="http-")
    s.add_argument("--no-http", action="store_true", help="do not start the HTTP API")


def settings_of(args: argparse.Namespace, *, prefix: str = "") -> HttpSettings:
    return HttpSettings(
        host=getattr(args, f"{prefix}host"),
        port=getattr(args, f"{prefix}port"),
        keys_file=args.keys_file,
        limits=Limits(
            max_sessions=args.max_sessions,
            rate=args.rate,
            burst=args.burst,
            max_body_bytes=args.max_body_bytes,
        ),
        config_dir=args.config_dir,
        task_queue=getattr(args, "task_queue", None)
        or os.environ.get("SESSIONS_TASK_QUEUE", DEFAULT_TASK_QUEUE),
    )


async def serve_beside(client: Client, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """`serve`: the API on the same client as the worker, until ``stop``."""
    if args.no_http:
        return
    try:
        await serve_http(settings_of(args, prefix="http_"), client, stop=stop)
    except (OSError, ValueError) as exc:  # a taken port, a bad key line: the rest goes on
        print(f"HTTP API not started: {exc}", flush=True)


async def run(args: argparse.Namespace) -> int:
    """`durable-sessions http`: until SIGINT or SIGTERM."""
    settings = settings_of(args)
    KeyStore.load(settings.keys_file)  # a bad keys line fails here, before connecting
    client = await connect(args.address, args.namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve_http(settings, client, stop=stop)
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def print_key(args: argparse.Namespace) -> int:
    try:
        key, line = new_key(
            args.user_id, admin=args.admin, max_sessions=args.sessions, rate=args.rate,
            burst=args.burst, allow=args.allow,
        )  # fmt: skip
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"key (give it to {args.user_id}; it is not stored anywhere): {key}")
    print("line for the keys file or $DURABLE_SESSIONS_API_KEYS:")
    print(line)
    return 0
