"""`durable-sessions serve`: an embedded, persistent Temporal dev server with its UI, a worker
with the built-in backends, and a short live demonstration; `durable-sessions demo` runs the demo
against a running server; `durable-sessions sessions ...` lists, shows, follows, calls and
destroys sessions (cli/sessions.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client

from backends import BUILTIN_BACKENDS, registered_backends
from cli import http_command, mcp_command
from cli.demo import run_demo
from cli.preflight import Listener, PreflightError, check_ports, lock_data_dir
from client.errors import SessionError
from client.transport import missing_worker
from contract import DEFAULT_TASK_QUEUE
from contract.extras import MissingExtra
from contract.naming import NEXUS_ENDPOINT
from runtime.connection import TemporalUnreachable, connect
from runtime.embedded import dev_server_command, dev_server_env
from runtime.nexus_endpoint import ensure_nexus_endpoint
from runtime.telemetry import flush_tracing

log = logging.getLogger("durable-sessions")


async def _wait_for_server(
    address: str, namespace: str, server: asyncio.subprocess.Process, timeout: float = 60
) -> Client:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if server.returncode is not None:
            raise PreflightError(
                f"the Temporal dev server exited with code {server.returncode} before it "
                f"answered on {address} (its errors are above)"
            )
        try:
            client = await connect(address, namespace)
            await client.count_workflows()  # the namespace answers, not only the port
            return client
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise PreflightError(
                    f"the Temporal dev server did not answer on {address} within {timeout:g} s: "
                    f"{exc}"
                ) from None
            await asyncio.sleep(0.5)


async def _wait_for_worker(
    client: Client, worker: asyncio.Task[None], timeout: float = 120
) -> None:
    """Until the worker polls its queue, so the demo's first call finds it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await missing_worker(client, DEFAULT_TASK_QUEUE, stale_after=timeout) is not None:
        if worker.done():
            worker.result()  # its failure, as it is
            raise PreflightError("the worker stopped before it polled its queue")
        if asyncio.get_running_loop().time() > deadline:
            raise PreflightError(f"the worker did not poll {DEFAULT_TASK_QUEUE!r} in {timeout:g} s")
        await asyncio.sleep(0.2)


def _listeners(args: argparse.Namespace) -> list[Listener]:
    """Every port `serve` listens on: the dev server's gRPC and UI, and the HTTP API's."""
    found = [
        Listener("Temporal gRPC", "--port", args.ip, args.port),
        Listener("Temporal UI", "--ui-port", args.ip, args.ui_port),
    ]
    if not args.no_http:
        found.append(Listener("HTTP API", "--http-port", args.http_host, args.http_port))
    return found


async def serve(args: argparse.Namespace) -> int:
    from worker import run_worker  # the worker module lives at the top of the repository

    # Before anything starts: a busy port or a data folder in use ends here, with what to do.
    data_dir = Path(args.data_dir).resolve()
    check_ports(_listeners(args))
    lock = lock_data_dir(data_dir)  # held until the process exits
    address = f"{args.ip}:{args.port}"
    os.environ["TEMPORAL_ADDRESS"] = address
    cmd = dev_server_command(
        db_file=data_dir / "temporal.db",
        port=args.port,
        ui_port=args.ui_port,
        ip=args.ip,
        ui_codec_endpoint=args.ui_codec_endpoint,
    )
    server = await asyncio.create_subprocess_exec(*cmd, env=dev_server_env(os.environ))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        client = await _wait_for_server(address, args.namespace, server)
        print(f"Temporal server on {address}, UI on http://{args.ip}:{args.ui_port}", flush=True)
        print(f"History is kept in {data_dir / 'temporal.db'}", flush=True)
        # The sessions' Nexus service, for workflows in other namespaces (docs/integrations.md).
        await ensure_nexus_endpoint(client, target_namespace=args.namespace)
        print(f"Nexus endpoint {NEXUS_ENDPOINT} -> {DEFAULT_TASK_QUEUE} queue", flush=True)
        worker = asyncio.create_task(run_worker(client, backends=args.backends, stop=stop))
        http = asyncio.create_task(http_command.serve_beside(client, args, stop))
        ok = True
        if not args.no_demo:
            await _wait_for_worker(client, worker)
            ui_url = f"http://{args.ip}:{args.ui_port}"
            ok = await run_demo(address, args.namespace, ui_url=ui_url)
        if args.exit_after_demo:
            stop.set()
        else:
            print("Running; press Ctrl-C to stop.", flush=True)
        await asyncio.gather(worker, http)
        return 0 if ok else 1
    finally:
        if server.returncode is None:
            server.terminate()
            try:
                await asyncio.wait_for(server.wait(), 20)
            except TimeoutError:
                server.kill()
                await server.wait()
        lock.close()


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run one command, then leave at once with its exit code."""
    _exit(_exit_code(argv))


def _exit_code(argv: Sequence[str] | None) -> int:
    """Run a command; what a person should read instead of a traceback becomes one message."""
    try:
        _dispatch(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except (TemporalUnreachable, PreflightError, SessionError, MissingExtra) as exc:
        print(f"durable-sessions: {exc}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    return 0


def _exit(code: int) -> None:
    """Flush and leave without interpreter finalization, where the SDK's native threads can
    abort the process ("Fatal Python error: PyGILState_Release") after a clean run; worker.py
    leaves the same way."""
    flush_tracing()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _dispatch(argv: list[str]) -> None:
    if argv[:1] == ["sessions"]:  # a Click group of its own (cli/sessions.py)
        from cli import sessions

        sys.exit(sessions.main(argv[1:]))
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
        help="codec server the UI asks to show encrypted payloads; the embedded UI sends no "
        "token, so start it as `python -m cli.codec_server --local-only-no-token`",
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
    http_command.add_serve_options(s)
    d = sub.add_parser("demo", help="run the demo against a running server and worker")
    d.add_argument("--address")
    d.add_argument("--namespace")
    mcp_command.add_parser(sub)
    http_command.add_parsers(sub)
    sub.add_parser(
        "sessions",
        help="list, show, follow (tail), call (exec) and destroy sessions: `sessions --help`",
        add_help=False,
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        unknown = sorted(set(args.backends) - registered_backends())
        if unknown:
            installed = " ".join(sorted(registered_backends())) or "none"
            parser.error(f"no backend registered as {' '.join(unknown)} (installed: {installed})")
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    if args.command == "serve":
        sys.exit(asyncio.run(serve(args)))
    if args.command == "mcp":
        sys.exit(asyncio.run(mcp_command.run(args)))
    if args.command == "http":
        sys.exit(asyncio.run(http_command.run(args)))
    if args.command == "http-key":
        sys.exit(http_command.print_key(args))
    sys.exit(0 if asyncio.run(run_demo(args.address, args.namespace)) else 1)


if __name__ == "__main__":
    main()
