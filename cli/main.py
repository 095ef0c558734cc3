"""`durable-sessions serve`: an embedded, persistent Temporal dev server with its UI, a worker
with the built-in backends, and a short live demonstration; `durable-sessions demo` runs the demo
against a running server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client

from backends import BUILTIN_BACKENDS, registered_backends
from cli.demo import run_demo
from runtime.connection import connect
from runtime.embedded import dev_server_command

log = logging.getLogger("durable-sessions")


async def _wait_for_server(address: str, namespace: str, timeout: float = 60) -> Client:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            client = await connect(address, namespace)
            await client.count_workflows()  # the namespace answers, not only the port
            return client
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def serve(args: argparse.Namespace) -> int:
    from worker import run_worker  # the worker module lives at the top of the repository

    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    address = f"{args.ip}:{args.port}"
    os.environ["TEMPORAL_ADDRESS"] = address
    cmd = dev_server_command(
        db_file=data_dir / "temporal.db",
        port=args.port,
        ui_port=args.ui_port,
        ip=args.ip,
        ui_codec_endpoint=args.ui_codec_endpoint,
    )
    server = await asyncio.create_subprocess_exec(*cmd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        client = await _wait_for_server(address, args.namespace)
        print(f"Temporal server on {address}, UI on http://{args.ip}:{args.ui_port}", flush=True)
        print(f"History is kept in {data_dir / 'temporal.db'}", flush=True)
        worker = asyncio.create_task(run_worker(client, backends=args.backends, stop=stop))
        ok = True
        if not args.no_demo:
            ok = await run_demo(address, args.namespace)
        if args.exit_after_demo:
            stop.set()
        else:
            print("Running; press Ctrl-C to stop.", flush=True)
        await worker
        return 0 if ok else 1
    finally:
        if server.returncode is None:
            server.terminate()
            try:
                await asyncio.wait_for(server.wait(), 20)
            except TimeoutError:
                server.kill()
                await server.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="durable-sessions", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="embedded dev server + UI + worker + demo")
    s.add_argument("--data-dir", default=os.environ.get("SESSIONS_DATA_DIR", ".data"))
    s.add_argument("--ip", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7233)
    s.add_argument("--ui-port", type=int, default=8233)
    s.add_argument("--namespace", default=os.environ.get("TEMPORAL_NAMESPACE", "default"))
    s.add_argument(
        "--ui-codec-endpoint",
        default=os.environ.get("DURABLE_SESSIONS_UI_CODEC_ENDPOINT"),
        help="codec server the UI asks to show encrypted payloads (python -m cli.codec_server)",
    )
    s.add_argument(
        "--backends",
        nargs="+",
        metavar="NAME",
        default=list(BUILTIN_BACKENDS),
        help="backends the worker offers (default: the built-in ones, "
        f"{' '.join(BUILTIN_BACKENDS)}; name a plugin's backend to offer it too)",
    )
    s.add_argument("--no-demo", action="store_true", help="skip the live demonstration")
    s.add_argument("--exit-after-demo", action="store_true", help="stop once the demo is done")
    d = sub.add_parser("demo", help="run the demo against a running server and worker")
    d.add_argument("--address")
    d.add_argument("--namespace")
    args = parser.parse_args(argv)
    if args.command == "serve":
        unknown = sorted(set(args.backends) - registered_backends())
        if unknown:
            installed = " ".join(sorted(registered_backends())) or "none"
            parser.error(f"no backend registered as {' '.join(unknown)} (installed: {installed})")
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    if args.command == "serve":
        sys.exit(asyncio.run(serve(args)))
    sys.exit(0 if asyncio.run(run_demo(args.address, args.namespace)) else 1)


if __name__ == "__main__":
    main()
