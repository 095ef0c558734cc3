"""`python worker.py`: a worker process with the built-in (and plugged-in) backends.

It polls the shared task queue (workflows, initialize, warmup, temporary calls) and a queue of its
own, where every call on an instance it holds is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import InstanceRegistry, SessionActivities
from activities.snapshots import SnapshotActivity
from backends import BackendHost, load_backends
from backends.jail_policy import ALLOW_ENV, JailCeiling, parse_allow
from contract import DEFAULT_TASK_QUEUE, InstanceReleased
from contract.activities import liveness_queue
from integrations.nexus_handler import SessionsNexusHandler
from runtime import log_redaction
from runtime.connection import connect
from runtime.payload_store import sweep_forever
from runtime.plugin import SessionsPlugin
from runtime.telemetry import flush_tracing, metrics_runtime
from workflows import SessionWorkflow, SharedToolsWorkflow, WarmupWorkflow

log = logging.getLogger("worker")


def pinned_queue_name(task_queue: str) -> str:
    return f"{task_queue}/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def workflow_worker_options() -> dict[str, Any]:
    """How the worker runs session workflows (bench/floor.py runs its floor the same way)."""
    return {
        # The sandbox still refuses non-deterministic calls, but shares imported modules across
        # runs instead of re-importing them for each new session: a session's first workflow
        # task drops from 70-580 ms to ~40 ms when 20 start at once (bench/run.py).
        "workflow_runner": SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
        ),
        # Pollers follow the load, as the SDK recommends, instead of a fixed five.
        "workflow_task_poller_behavior": PollerBehaviorAutoscaling(),
        "activity_task_poller_behavior": PollerBehaviorAutoscaling(),
    }


async def run_worker(
    client: Client,
    *,
    task_queue: str = DEFAULT_TASK_QUEUE,
    backends: Sequence[str] | None = None,
    stop: asyncio.Event,
    graceful_shutdown: timedelta = timedelta(seconds=30),
    max_cached_sessions: int = 1000,
    local_calls: bool = True,
    max_concurrent_calls: int | None = None,
    session_allow: JailCeiling | None = None,
) -> None:
    """Run until ``stop`` is set, then finish in-flight calls and release every instance.

    With ``local_calls`` off, every call on an instance goes through the worker's pinned queue
    (the fallback path) instead of running as a local activity where the instance lives.
    ``max_concurrent_calls`` bounds the calls its pinned queue runs at once (the SDK's default).
    ``session_allow``: what sessions may ask of their sandbox above the defaults (None: from
    ``$DURABLE_SESSIONS_SESSION_ALLOW``, empty: nothing); a config past it fails with 4012.

    ``client`` must carry the SessionsPlugin (``runtime.connection.connect`` adds it): each
    ``Worker`` takes its client's plugins, so the data converter, the codec and the tracing
    interceptor are the client's, not wired here a second time.
    """
    if not any(isinstance(p, SessionsPlugin) for p in client.config()["plugins"]):
        raise ValueError("connect the worker's client with runtime.connection.connect")
    log_redaction.install()  # no request's parameters or config in a log line
    host = BackendHost(load_backends(backends))
    pinned = pinned_queue_name(task_queue)
    if session_allow is None:
        session_allow = parse_allow(os.environ.get(ALLOW_ENV, ""))
    acts = SessionActivities(
        host,
        InstanceRegistry(),
        task_queue=pinned,
        local_calls=local_calls,
        ceiling=session_allow,
    )
    workers = _workers(
        client,
        acts,
        task_queue=task_queue,
        graceful_shutdown=graceful_shutdown,
        max_cached_sessions=max_cached_sessions,
        max_concurrent_calls=max_concurrent_calls,
    )
    runs = [asyncio.create_task(w.run()) for w in workers]
    print(f"READY {pinned} backends={','.join(sorted(host.backends))}", flush=True)
    stopped = asyncio.create_task(stop.wait())
    # Drops the payloads of closed sessions from the payload folder (runtime/payload_store.py).
    sweeper = asyncio.create_task(sweep_forever(client))
    done, _ = await asyncio.wait([*runs, stopped], return_when=asyncio.FIRST_COMPLETED)
    sweeper.cancel()
    await asyncio.gather(*(w.shutdown() for w in workers))

    async def notify(workflow_id: str, released: InstanceReleased) -> None:
        await client.get_workflow_handle(workflow_id).signal("instance_released", released)

    released = await acts.release_all(notify)
    await host.shutdown()
    stopped.cancel()
    log.info("worker %s stopped; released %d instances", pinned, released)
    for task in runs:
        if task in done and task.exception():
            raise task.exception()  # type: ignore[misc]


def _workers(
    client: Client,
    acts: SessionActivities,
    *,
    task_queue: str,
    graceful_shutdown: timedelta,
    max_cached_sessions: int,
    max_concurrent_calls: int | None,
) -> tuple[Worker, ...]:
    """The process's three workers: the shared queue (sessions, initialize, temporary calls),
    its pinned queue (calls on the instances it holds) and its liveness queue."""
    pinned = acts.task_queue
    snapshots = SnapshotActivity(acts.registry)
    shared_worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[SessionWorkflow, SharedToolsWorkflow, WarmupWorkflow],
        activities=[acts.warmup, acts.initialize, acts.call_tool, snapshots.snapshot],
        # The sessions' Nexus service, for callers in other namespaces (integrations/).
        nexus_service_handlers=[SessionsNexusHandler(task_queue)],
        graceful_shutdown_timeout=graceful_shutdown,
        # An idle session evicted from this cache costs the worker nothing but its backend
        # instance; its next request replays it from history.
        max_cached_workflows=max_cached_sessions,
        **workflow_worker_options(),
        # A crashed worker's cached sessions move to another worker this quickly (a live
        # worker polls its sticky queue all the time; this only ever fires for a dead one).
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
    )
    pinned_worker = Worker(
        client,
        task_queue=pinned,
        activities=[acts.call_tool, acts.cleanup, acts.warmup, snapshots.snapshot],
        graceful_shutdown_timeout=graceful_shutdown,
        activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        max_concurrent_activities=max_concurrent_calls,
    )
    # Answers "are you alive?" for a call its pinned queue has not started yet: slots of its
    # own, so a worker busy with long calls is never taken for a dead one.
    alive_worker = Worker(
        client,
        task_queue=liveness_queue(pinned),
        activities=[acts.alive],
        max_concurrent_activities=20,
    )
    return shared_worker, pinned_worker, alive_worker


async def main_async(args: argparse.Namespace) -> None:
    client = await connect(args.address, args.namespace, runtime=metrics_runtime())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_worker(
        client,
        task_queue=args.task_queue,
        backends=args.backends,
        stop=stop,
        max_cached_sessions=args.max_cached_sessions,
        local_calls=args.local_calls,
        max_concurrent_calls=args.max_concurrent_calls,
        session_allow=args.session_allow,
    )


def _allowance(text: str) -> JailCeiling:
    try:
        return parse_allow(text)
    except ValueError as exc:  # argparse shows it with the option's name
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", help="Temporal address (default: $TEMPORAL_ADDRESS)")
    parser.add_argument("--namespace", help="namespace (default: $TEMPORAL_NAMESPACE)")
    parser.add_argument(
        "--task-queue", default=os.environ.get("SESSIONS_TASK_QUEUE", DEFAULT_TASK_QUEUE)
    )
    parser.add_argument(
        "--max-cached-sessions",
        type=int,
        default=int(os.environ.get("SESSIONS_MAX_CACHED", "1000")),
        help="session workflows kept in memory between requests (default: $SESSIONS_MAX_CACHED)",
    )
    parser.add_argument("--backends", nargs="*", help="backends to load (default: all registered)")
    parser.add_argument(
        "--no-local-calls",
        dest="local_calls",
        action="store_false",
        default=os.environ.get("SESSIONS_LOCAL_CALLS", "1") != "0",
        help="send every call through the pinned queue (default: $SESSIONS_LOCAL_CALLS, 1)",
    )
    parser.add_argument(
        "--max-concurrent-calls",
        type=int,
        help="calls on this worker's instances that run at once through its pinned queue",
    )
    parser.add_argument(
        "--session-allow",
        type=_allowance,
        default=os.environ.get(ALLOW_ENV, ""),
        metavar="TOKENS",
        help="what sessions may ask of their sandbox above the defaults, e.g. "
        "'network,memory_mb=4096' (also isolation=none and any limit=N; docs/security.md); "
        f"default ${ALLOW_ENV}, else nothing",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    asyncio.run(main_async(args))
    # Everything is released and flushed; skip interpreter finalization, where the SDK's native
    # threads can abort the process after a clean stop.
    flush_tracing()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
