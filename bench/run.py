"""Measure each of our paths beside the bare Temporal operation it is built on, in one run on the
embedded dev server, samples interleaved.

.venv/bin/python -m bench.run          # table, bench/results/bench-<time>.json, docs/bench.png
.venv/bin/python -m bench.run --quick  # a smoke check, few iterations (chart only with --chart)

Paths and their floors (ratio of p50s, target from issue 13):

- explicit session, ``bash:run`` echo, instance on the worker running the workflow task (a local
  activity) vs update + local activity (<= 1.3x); beside it the direct floor: the same tool
  called in-process on ``BashBackend``, no Temporal.
- the fallback path (a worker run with ``--no-local-calls`` on a queue of its own: every call goes
  through its pinned queue) vs update + activity on a worker queue (<= 1.25x).
- temporary execute vs update-with-start + one local activity (<= 1.5x). The worker keeps bash
  sandboxes started ahead (``activities/warm_pool.py``), which this path and the next take; their
  direct floors start a fresh one.
- ``create_session`` -> first result vs (update-with-start + local activity) + (update + local
  activity) (<= 1.3x).
- a shared tool (``tally:ping``, no-op) vs update + local activity (<= 1.25x).
- ``execute_batch`` of 10 echo calls vs 10 sequential executes (no target).
- throughput, 50 sessions x 20 calls at once, vs 50 floor workflows x 20 updates (no-op, and
  update + local activity): >= 0.8x the update + local activity floor, 0 errors.
- 20 creations at once with a 0.5 s initialize vs one (<= 1.3x), bare Temporal beside it.
- worker RSS with 1,000 idle sessions held (<= 400 MB).

Diagnostics printed beside them, to say where the time goes: per-path medians from the
workflows' histories (dispatch vs time on the worker), the floors on a worker that carries our
SessionsPlugin, the fallback and temporary paths with a no-op plugin tool, the direct floor plus
the snapshot the worker takes after each call, two parts of the temporary path (the look for a
session a call with none sends first, and the sandbox's end), and CPU per call of each process
(children included) in the throughput rounds. ``python -m bench.chart FILE`` redraws a results file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from backends.bash import BashBackend
from bench.floor import FLOOR_QUEUE, PLUGIN_FLOOR_QUEUE, FloorWorkflow, start_floor_worker
from bench.server import start_embedded
from client import Sandbox
from contract import BatchRequest, ExecuteRequest, session_workflow_id
from runtime.embedded import DYNAMIC_CONFIG
from tests.processes import WorkerProcess
from workflows import SessionWorkflow

ROOT = Path(__file__).resolve().parent.parent
ECHO = {"command": "echo hi"}
BATCH = 10  # calls in one execute_batch


THROUGHPUT_KINDS = (
    "floor: no-op update",
    "floor: update + local activity",
    "ours: bash:run echo",
    "direct: BashBackend.run in-process",
)


class After:
    """What an op may return: work to run once its sample is taken, untimed (a cleanup)."""

    def __init__(self, fn: Callable[[], Awaitable[Any]]) -> None:
        self.fn = fn


Op = Callable[[int], Awaitable[Any]]


async def _sample(op: Op, i: int) -> float:
    started = time.perf_counter()
    result = await op(i)
    took = (time.perf_counter() - started) * 1000
    if isinstance(result, After):
        await result.fn()
    return took


async def _timed(n: int, op: Op, warmup: int = 3) -> list[float]:
    for i in range(warmup):
        await _sample(op, -1 - i)
    return [await _sample(op, i) for i in range(n)]


async def _interleaved(n: int, ops: Sequence[Op], warmup: int = 3) -> list[list[float]]:
    """One sample of each op in turn, the order rotated each round, so every op meets the same
    machine and server moment (latency here shifts in steps during a run; separate runs would be
    incomparable) and none always follows the same neighbour."""
    for op in ops:
        await _timed(0, op, warmup)
    samples: list[list[float]] = [[] for _ in ops]
    for i in range(n):
        for k in range(len(ops)):
            j = (i + k) % len(ops)
            samples[j].append(await _sample(ops[j], i))
    return samples


async def _paired(n: int, floor_op: Op, ours_op: Op) -> tuple[list[float], list[float]]:
    floor_samples, ours_samples = await _interleaved(n, [floor_op, ours_op])
    return floor_samples, ours_samples


def _stats(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2),
    }


def _drift(samples: list[float]) -> float:
    """Median of the last half over the median of the first tenth: a floor with a step in it
    (a misconfigured server) shows well over 1."""
    head = samples[: max(3, len(samples) // 10)]
    return round(statistics.median(samples[len(samples) // 2 :]) / statistics.median(head), 2)


class Errors:
    """Non-zero envelope codes per path: a latency of a failed call is no latency."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def check(self, label: str, envelope: dict[str, Any], **meta: Any) -> dict[str, Any]:
        meta_ok = all(envelope["meta"].get(k) == v for k, v in meta.items())
        bad = envelope.get("code") != 0 or not meta_ok
        self.counts[label] = self.counts.get(label, 0) + int(bad)
        return envelope


def _compare(
    path: str,
    ours: list[float],
    floor_name: str,
    floor: list[float],
    target: float | None,
    errors: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    o, f = _stats(ours), _stats(floor)
    row: dict[str, Any] = {
        "path": path,
        "ours": o,
        "floor_name": floor_name,
        "floor": f,
        "ratio_p50": round(o["p50_ms"] / f["p50_ms"], 2),
        "ratio_p95": round(o["p95_ms"] / f["p95_ms"], 2),
        "target_p50": target,
        "met": None if target is None else o["p50_ms"] / f["p50_ms"] <= target and errors == 0,
        "errors": errors,
        "floor_drift": _drift(floor),
    }
    direct = extra.get("direct")
    if direct is not None:  # the floor's round trips plus the tool's own work, no Temporal
        row["ratio_p50_vs_floor_plus_direct"] = round(
            o["p50_ms"] / (f["p50_ms"] + direct["p50_ms"]), 2
        )
    row.update(extra)
    return row


# --- the run -----------------------------------------------------------------------------------


async def main(
    quick: bool, samples: int | None = None, latency_only: bool = False
) -> dict[str, Any]:
    n = samples or (20 if quick else 200)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "samples_per_path": n,
        "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()},
        "server": {"dynamic_config": DYNAMIC_CONFIG, "database": "sqlite file (WAL)"},
    }
    with tempfile.TemporaryDirectory() as tmp:
        env = await start_embedded(Path(tmp) / "temporal.db")  # as the main command runs it
        client = env.client
        address = client.service_client.config.target_host
        worker = await WorkerProcess.start(address)
        fallback_queue = f"bench-fallback-{uuid.uuid4().hex[:6]}"
        fallback = await WorkerProcess.start(
            address, args=["--task-queue", fallback_queue, "--no-local-calls"]
        )
        pinned = f"{FLOOR_QUEUE}/pinned-{uuid.uuid4().hex[:6]}"
        floor_worker = await start_floor_worker(address, pinned)
        plugin_floor = await start_floor_worker(address, f"{pinned}-plugin", plugin=True)
        loads = results["machine"]["load_by_section"] = {}
        try:
            results["latency"] = await _latency(client, pinned, fallback_queue, n)
            loads["latency"] = os.getloadavg()
            if latency_only:
                return results
            await fallback.stop()
            plugin_floor.terminate()
            await plugin_floor.wait()
            pids = {"worker": worker.pid, "floor_worker": floor_worker.pid}
            results["throughput"] = await _throughput(client, pinned, quick, pids)
            loads["throughput"] = os.getloadavg()
            results["load"] = await _load(client, worker.pid, pinned, quick=quick)
            loads["creations_and_held"] = os.getloadavg()
            await worker.stop()
            # The same sessions on a worker whose cache holds only a tenth of them: what an
            # idle session costs once evicted.
            held = 100 if quick else 1000
            worker = await WorkerProcess.start(
                address, args=["--max-cached-sessions", str(held // 10)]
            )
            results["load"]["held_evicted"] = await _held(client, worker.pid, held, held // 10)
        finally:
            for proc in (floor_worker, plugin_floor):
                if proc.returncode is None:
                    proc.terminate()
                await proc.wait()
            await fallback.stop()
            await worker.stop()
            await env.shutdown()
    results["machine"]["load_after"] = os.getloadavg()
    return results


async def _start_floor(client: Any, pinned: str, update: Any, arg: Any, **start: Any) -> Any:
    """A new floor workflow started together with its first update (update-with-start);
    ``start``: more options of the start (search attributes, a summary)."""
    op = WithStartWorkflowOperation(
        FloorWorkflow.run,
        pinned,
        id=f"floor-{uuid.uuid4().hex}",
        task_queue=FLOOR_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        **start,
    )
    await client.execute_update_with_start_workflow(update, arg, start_workflow_operation=op)
    return await op.workflow_handle()


async def _new_floor(
    client: Any, pinned: str, queue: str = FLOOR_QUEUE
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        FloorWorkflow.run, pinned, id=f"floor-{uuid.uuid4().hex[:8]}", task_queue=queue
    )


async def _latency(client: Any, pinned: str, fallback_queue: str, n: int) -> list[dict[str, Any]]:
    errors = Errors()
    rows: list[dict[str, Any]] = []
    floor_la = await _new_floor(client, pinned)
    floor_act = await _new_floor(client, pinned)
    # The same floors on a worker that carries our SessionsPlugin: what the plugin costs.
    plugin_la = await _new_floor(client, f"{pinned}-plugin", PLUGIN_FLOOR_QUEUE)
    plugin_act = await _new_floor(client, f"{pinned}-plugin", PLUGIN_FLOOR_QUEUE)

    async def floor_local(i: int) -> None:
        await floor_la.execute_update(FloorWorkflow.with_local_activity, "x")

    async def floor_activity(i: int) -> None:
        await floor_act.execute_update(FloorWorkflow.with_activity, "x")

    async def plugin_local(i: int) -> None:
        await plugin_la.execute_update(FloorWorkflow.with_local_activity, "x")

    async def plugin_activity(i: int) -> None:
        await plugin_act.execute_update(FloorWorkflow.with_activity, "x")

    # The direct floor: the same tool on the same backend, in this process, no Temporal.
    backend = BashBackend()
    info = await backend.initialize("bench", {})

    async def direct_run(i: int) -> None:
        await backend.run(ECHO["command"], session_info=info)

    async def direct_run_snapshot(i: int) -> None:  # what the worker does per call
        await backend.run(ECHO["command"], session_info=info)
        await backend.snapshot(info)

    def overhead(ours: list[float], direct: list[float]) -> float:
        return round(statistics.median(ours) - statistics.median(direct), 2)

    def executes(label: str, sb: Sandbox, tool: str, params: dict[str, Any]) -> Op:
        async def op(i: int) -> None:
            errors.check(label, await sb.execute(tool, params))

        return op

    # 1. Explicit session, instance on the worker that runs the workflow task: a local activity.
    # (No no-op tool beside it: a tool without a ``timeout`` parameter, as testkit's, may run
    # for the 300 s default, more than a local call may hold the workflow task, so it takes the
    # pinned queue; bash:run's default timeout is 30 s.)
    sandbox = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
    await sandbox.create_session("bash")
    explicit = executes("explicit", sandbox, "bash:run", ECHO)
    floor, ours, direct, direct_snap, with_plugin = await _interleaved(
        n, [floor_local, explicit, direct_run, direct_run_snapshot, plugin_local]
    )
    rows.append(
        _compare(
            "bash:run echo, explicit session (local activity)",
            ours,
            "update + local activity",
            floor,
            1.3,
            errors.counts.get("explicit", 0),
            direct=_stats(direct),
            direct_name="BashBackend.run, in-process",
            temporal_overhead_ms=overhead(ours, direct),
            direct_with_snapshot=_stats(direct_snap),
            floor_with_plugin=_stats(with_plugin),
            history={
                "ours": await _history(
                    client.get_workflow_handle(session_workflow_id(sandbox.sandbox_id, "bash"))
                ),
                "floor": await _history(floor_la),
                "floor_with_plugin": await _history(plugin_la),
            },
        )
    )

    # 2. The fallback path: every call through the holding worker's pinned queue.
    remote = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client, task_queue=fallback_queue)
    await remote.create_session("bash")
    await remote.create_session("testkit")
    fallback = executes("fallback", remote, "bash:run", ECHO)
    fallback_noop = executes("fallback_noop", remote, "testkit:pid", {})
    floor, ours, direct, noop, direct_snap, with_plugin = await _interleaved(
        n,
        [floor_activity, fallback, direct_run, fallback_noop, direct_run_snapshot, plugin_activity],
    )
    rows.append(
        _compare(
            "bash:run echo, fallback (pinned-queue activity)",
            ours,
            "update + activity on a worker queue",
            floor,
            1.25,
            errors.counts.get("fallback", 0),
            direct=_stats(direct),
            direct_name="BashBackend.run, in-process",
            temporal_overhead_ms=overhead(ours, direct),
            direct_with_snapshot=_stats(direct_snap),
            floor_with_plugin=_stats(with_plugin),
            history={
                "ours": await _history(
                    client.get_workflow_handle(session_workflow_id(remote.sandbox_id, "bash"))
                ),
                "floor": await _history(floor_act),
                "floor_with_plugin": await _history(plugin_act),
            },
        )
    )
    rows.append(
        _compare(
            "fallback, no-op plugin tool (testkit:pid)",
            noop,
            "update + activity on a worker queue",
            floor,
            None,
            errors.counts.get("fallback_noop", 0),
        )
    )
    await remote.destroy_session(["bash", "testkit"])

    # 3. Temporary execute: update-with-start, one local activity (initialize, call, cleanup).
    temp = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
    temp_ids: list[str] = []

    def temporary(label: str, tool: str, params: dict[str, Any]) -> Op:
        async def op(i: int) -> None:
            envelope = await temp.execute(tool, params)
            errors.check(label, envelope, temporary_session=True)
            if label == "temporary":
                temp_ids.append(envelope["meta"]["workflow_id"])

        return op

    async def floor_start_local(i: int) -> After:
        handle = await _start_floor(client, pinned, FloorWorkflow.with_local_activity, "x")
        return After(lambda: handle.execute_update(FloorWorkflow.finish))

    ends: list[float] = []

    async def direct_once(i: int) -> None:
        one = await backend.initialize("bench", {})
        await backend.run(ECHO["command"], session_info=one)
        started = time.perf_counter()
        await backend.cleanup("bench", one)
        ends.append((time.perf_counter() - started) * 1000)

    async def lookup(i: int) -> None:
        """What a call with no session sends first: the update to the sandbox's session, which
        the server refuses (no run of it exists)."""
        handle = client.get_workflow_handle_for(
            SessionWorkflow.run, session_workflow_id(f"bench-none-{i}", "bash")
        )
        request = ExecuteRequest(tool="bash:run", params=ECHO, request_id=uuid.uuid4().hex)
        try:
            await handle.execute_update(SessionWorkflow.execute, request)
        except RPCError:
            return
        raise AssertionError("a sandbox with no session answered an update")

    floor, ours, direct, noop, lookups = await _interleaved(
        n,
        [
            floor_start_local,
            temporary("temporary", "bash:run", ECHO),
            direct_once,
            temporary("temporary_noop", "testkit:pid", {}),
            lookup,
        ],
    )
    rows.append(
        _compare(
            "temporary execute (no session)",
            ours,
            "update-with-start + local activity",
            floor,
            1.5,
            errors.counts.get("temporary", 0),
            direct=_stats(direct),
            direct_name="BashBackend init + run + cleanup (a fresh sandbox)",
            temporal_overhead_ms=overhead(ours, direct),
            parts={
                "the look for a session first (no run: refused)": _stats(lookups),
                "the sandbox's end (BashBackend.cleanup)": _stats(ends),
            },
            history={
                "ours": await _history(*(client.get_workflow_handle(w) for w in temp_ids[-20:]))
            },
        )
    )
    rows.append(
        _compare(
            "temporary execute, no-op plugin (testkit:pid)",
            noop,
            "update-with-start + local activity",
            floor,
            None,
            errors.counts.get("temporary_noop", 0),
        )
    )

    # 4. create_session, then the first call.
    def create_then_first(label: str, resource: str, tool: str, params: dict[str, Any]) -> Op:
        async def op(i: int) -> After:
            sb = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
            view = await sb.create_session(resource)
            errors.check(label, {"code": 0 if view["status"] == "success" else 1, "meta": {}})
            errors.check(label, await sb.execute(tool, params))
            return After(lambda: sb.destroy_session(resource))

        return op

    async def floor_start_then_local(i: int) -> After:
        handle = await _start_floor(client, pinned, FloorWorkflow.with_local_activity, "x")
        await handle.execute_update(FloorWorkflow.with_local_activity, "x")
        return After(lambda: handle.execute_update(FloorWorkflow.finish))

    async def direct_first(i: int) -> After:
        one = await backend.initialize("bench", {})
        await backend.run(ECHO["command"], session_info=one)
        return After(lambda: backend.cleanup("bench", one))

    floor, ours, direct = await _interleaved(
        n,
        [
            floor_start_then_local,
            create_then_first("create", "bash", "bash:run", ECHO),
            direct_first,
        ],
    )
    rows.append(
        _compare(
            "create_session -> first result",
            ours,
            "(update-with-start + LA) + (update + LA)",
            floor,
            1.3,
            errors.counts.get("create", 0),
            direct=_stats(direct),
            direct_name="BashBackend init + run (a fresh sandbox)",
            temporal_overhead_ms=overhead(ours, direct),
        )
    )

    # 5. A shared tool (no session): one update on the sandbox's shared-tools workflow, one local
    # activity. The plugin package under tests/ provides the no-op `tally`.
    await sandbox.warmup(["tally"])
    floor, ours = await _paired(n, floor_local, executes("shared", sandbox, "tally:ping", {}))
    rows.append(
        _compare(
            "shared tool (tally:ping, no-op)",
            ours,
            "update + local activity",
            floor,
            1.25,
            errors.counts.get("shared", 0),
        )
    )

    # 6. A batch of calls in one update vs the same calls one update each.
    handle = client.get_workflow_handle_for(
        SessionWorkflow.run, session_workflow_id(sandbox.sandbox_id, "bash")
    )

    async def batch(i: int) -> None:
        calls = [
            ExecuteRequest(tool="bash:run", params=ECHO, request_id=uuid.uuid4().hex)
            for _ in range(BATCH)
        ]
        for envelope in await handle.execute_update(
            SessionWorkflow.execute_batch, BatchRequest(calls=calls)
        ):
            errors.check("batch", envelope.model_dump(mode="json"))

    async def sequential(i: int) -> None:
        for _ in range(BATCH):
            errors.check("sequential", await sandbox.execute("bash:run", ECHO))

    floor, ours = await _paired(max(10, n // 4), sequential, batch)
    rows.append(
        _compare(
            f"execute_batch of {BATCH} echo calls",
            ours,
            f"{BATCH} sequential executes (ours)",
            floor,
            None,
            errors.counts.get("batch", 0) + errors.counts.get("sequential", 0),
            per_call_ms=round(statistics.median(ours) / BATCH, 2),
        )
    )

    await sandbox.destroy_session("bash")
    await backend.cleanup("bench", info)
    for f in (floor_la, floor_act, plugin_la, plugin_act):
        await f.execute_update(FloorWorkflow.finish)
    return rows


async def _history(*handles: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """Where a workflow's time went, from its history's timestamps (medians, ms): workflow task
    scheduled -> started (dispatch to a worker) and started -> completed (the worker's turn,
    local activities included), activity scheduled -> started (dispatch through the queue) and
    started -> completed, activity completed -> next workflow task started."""
    spans: dict[str, list[float]] = {
        "task_dispatch": [],
        "task_on_worker": [],
        "activity_dispatch": [],
        "activity_run": [],
        "activity_to_next_task": [],
    }
    events = [e for h in handles for e in (await h.fetch_history()).events]
    marks: dict[str, float] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            marks.clear()
        at = event.event_time.ToDatetime().timestamp() * 1000
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            marks["task"] = at
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            if "task" in marks:
                spans["task_dispatch"].append(at - marks.pop("task"))
            if "activity_done" in marks:
                spans["activity_to_next_task"].append(at - marks.pop("activity_done"))
            marks["task_started"] = at
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and "task_started" in marks:
            spans["task_on_worker"].append(at - marks.pop("task_started"))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            marks["activity"] = at
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and "activity" in marks:
            spans["activity_dispatch"].append(at - marks.pop("activity"))
            marks["activity_started"] = at
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED and "activity_started" in marks:
            spans["activity_run"].append(at - marks.pop("activity_started"))
            marks["activity_done"] = at
    return {
        f"{name}_ms": round(statistics.median(values), 1)
        for name, values in spans.items()
        if values
    } | {"workflow_tasks": len(spans["task_on_worker"])}


# --- throughput --------------------------------------------------------------------------------


async def _throughput(
    client: Any, pinned: str, quick: bool, pids: dict[str, int]
) -> dict[str, Any]:
    """Many sessions calling at once: ours beside floor workflows doing the same number of
    updates (no-op, and update + local activity), rounds interleaved, median round kept. Beside
    each round the CPU each process (with its children: the sessions' shells) spent per call."""
    sessions, calls = (10, 5) if quick else (50, 20)
    rounds = 1 if quick else 3
    boxes = [Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client) for _ in range(sessions)]
    await asyncio.gather(*(sb.create_session("bash") for sb in boxes))
    floors = await asyncio.gather(*(_new_floor(client, pinned) for _ in range(sessions)))
    backend = BashBackend()
    shells = await asyncio.gather(*(backend.initialize("bench", {}) for _ in range(sessions)))

    async def direct(i: int) -> tuple[int, list[float]]:
        latencies: list[float] = []
        for _ in range(calls):
            started = time.perf_counter()
            await backend.run(ECHO["command"], session_info=shells[i])
            latencies.append((time.perf_counter() - started) * 1000)
        return 0, latencies

    def ours(tool: str, params: dict[str, Any]) -> Callable[[int], Awaitable[Any]]:
        async def drive(i: int) -> tuple[int, list[float]]:
            latencies: list[float] = []
            bad = 0
            for _ in range(calls):
                started = time.perf_counter()
                bad += (await boxes[i].execute(tool, params))["code"] != 0
                latencies.append((time.perf_counter() - started) * 1000)
            return bad, latencies

        return drive

    def floor(update: Any) -> Callable[[int], Awaitable[tuple[int, list[float]]]]:
        async def drive(i: int) -> tuple[int, list[float]]:
            latencies: list[float] = []
            for _ in range(calls):
                started = time.perf_counter()
                await floors[i].execute_update(update, "x")
                latencies.append((time.perf_counter() - started) * 1000)
            return 0, latencies

        return drive

    drives = (
        floor(FloorWorkflow.noop),
        floor(FloorWorkflow.with_local_activity),
        ours("bash:run", ECHO),
        direct,
    )
    kinds = dict(zip(THROUGHPUT_KINDS, drives, strict=True))
    measured: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    names = list(kinds)
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]

            async def guarded(i: int, drive: Any = kinds[name]) -> tuple[int, list[float]]:
                try:
                    return await drive(i)
                except Exception:
                    return calls, []

            cpu_before = _cpu(pids)
            started = time.perf_counter()
            per = await asyncio.gather(*(guarded(i) for i in range(sessions)))
            elapsed = time.perf_counter() - started
            cpu_after = _cpu(pids)
            done = sessions * calls
            latencies = [x for _, lat in per for x in lat]
            measured[name].append(
                {
                    "calls_per_second": round(done / elapsed, 1),
                    "errors": sum(b for b, _ in per),
                    "wall_ms": round(elapsed * 1000, 1),
                    **(_stats(latencies) if latencies else {}),
                    "cpu_ms_per_call": {
                        who: round((cpu_after[who] - cpu_before[who]) * 1000 / done, 2)
                        for who in cpu_before
                    },
                }
            )
    await asyncio.gather(*(sb.destroy_session("bash") for sb in boxes))
    await asyncio.gather(*(backend.cleanup("bench", info) for info in shells))
    await asyncio.gather(*(f.execute_update(FloorWorkflow.finish) for f in floors))
    out: dict[str, Any] = {"sessions": sessions, "calls_each": calls, "rounds": rounds}
    for name, runs in measured.items():
        best = sorted(runs, key=lambda x: x["calls_per_second"])[len(runs) // 2]
        out[name] = {**best, "errors": sum(x["errors"] for x in runs), "rounds": runs}
    ours_rate = out["ours: bash:run echo"]["calls_per_second"]
    la_rate = out["floor: update + local activity"]["calls_per_second"]
    out["ratio"] = round(ours_rate / la_rate, 2)
    out["target"] = 0.8
    out["met"] = out["ratio"] >= 0.8 and out["ours: bash:run echo"]["errors"] == 0
    return out


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, name, CPU seconds used so far)."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / tick)
    return table


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process and its live descendants; ``server`` is the dev
    server (a child of this process), ``client`` this process and the rest of its descendants
    (the direct floor's shells)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)

    def tree(root: int) -> float:
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][2]
            todo += children.get(pid, [])
        return total

    me = os.getpid()
    out = {name: tree(pid) for name, pid in pids.items()}
    out["server"] = sum(
        tree(pid) for pid in children.get(me, []) if table[pid][1].startswith("temporal")
    )
    out["client"] = tree(me) - out["server"] - sum(out[name] for name in pids)
    return out


# --- load: concurrent creations, held sessions ---------------------------------------------------


async def _load(client: Any, worker_pid: int, pinned: str, *, quick: bool) -> dict[str, Any]:
    """Concurrency and memory: creations at once, many sessions held."""
    rows: dict[str, Any] = {}

    async def create(config: dict[str, Any], rt: str = "testkit") -> Sandbox:
        sb = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
        await sb.create_session(rt, config)
        return sb

    slow = {"init_delay": 0.5}  # a backend whose initialize takes 0.5 s

    async def create_slow() -> Callable[[], Awaitable[Any]]:
        sb = await create(slow)
        return lambda: sb.destroy_session("testkit")

    async def floor_slow() -> Callable[[], Awaitable[Any]]:
        handle = await _start_floor(client, pinned, FloorWorkflow.with_slow_local_activity, 0.5)
        return lambda: handle.execute_update(FloorWorkflow.finish)

    bursts = 2 if quick else 5  # one burst is noisy on a small machine: take the median
    for name, make in (("floor", floor_slow), ("ours", create_slow)):
        one, walls = [], []
        for _ in range(3):
            started = time.perf_counter()
            finish = await make()
            one.append((time.perf_counter() - started) * 1000)
            await finish()
        for _ in range(bursts):
            started = time.perf_counter()
            finishes = await asyncio.gather(*(make() for _ in range(20)))
            walls.append((time.perf_counter() - started) * 1000)
            await asyncio.gather(*(f() for f in finishes))
        single, wall = statistics.median(one), statistics.median(walls)
        rows[f"creations_{name}"] = {
            "what": (
                "20 x (update-with-start running a 0.5 s local activity) at once"
                if name == "floor"
                else "20 create_session at once, initialize 0.5 s (testkit)"
            ),
            "wall_ms": round(wall, 1),
            "one_ms": round(single, 1),
            "ratio": round(wall / single, 2),
            "walls_ms": [round(w) for w in walls],
        }
    rows["creations_ours"]["target"] = 1.3
    rows["creations_ours"]["met"] = rows["creations_ours"]["ratio"] <= 1.3
    held = 100 if quick else 1000
    rows["held"] = await _held(client, worker_pid, held, None)
    return rows


async def _held(client: Any, worker_pid: int, held: int, cache: int | None) -> dict[str, Any]:
    """Worker memory while ``held`` idle sessions are open (each holding a testkit instance)."""
    gate = asyncio.Semaphore(50)

    async def hold() -> Sandbox:
        async with gate:
            sb = Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client)
            await sb.create_session("testkit", {})
            return sb

    async def release(sb: Sandbox) -> None:
        async with gate:
            await sb.destroy_session("testkit")

    # A first round pays the one-time costs (imports, caches) so they are not counted per session.
    await asyncio.gather(
        *(release(sb) for sb in await asyncio.gather(*(hold() for _ in range(50))))
    )
    before = _rss_mb(worker_pid)
    started = time.perf_counter()
    kept = await asyncio.gather(*(hold() for _ in range(held)))
    created = time.perf_counter() - started
    after = _rss_mb(worker_pid)
    row: dict[str, Any] = {
        "sessions": held,
        "worker_cache": cache if cache is not None else "all (default 1000)",
        "worker_rss_before_mb": before,
        "worker_rss_after_mb": after,
        "per_session_kb": round((after - before) * 1024 / held, 1),
        "created_per_second": round(held / created, 1),
    }
    if cache is None:
        row["target_mb"] = 400
        row["met"] = after <= 400
    await asyncio.gather(*(release(sb) for sb in kept))
    return row


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# --- report --------------------------------------------------------------------------------------


def _verdict(met: bool | None, target: str) -> str:
    if met is None:
        return ""
    return f"{target} {'met' if met else 'MISSED'}"


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{'path':50} {'p50':>7} {'p95':>7}  {'floor':42} {'p50':>7} {'p95':>7} "
        f"{'x p50':>6} {'x p95':>6}  target"
    ]
    for row in results["latency"]:
        o, f = row["ours"], row["floor"]
        target = _verdict(row["met"], f"<= {row['target_p50']}x") if row["target_p50"] else ""
        lines.append(
            f"{row['path']:50} {o['p50_ms']:7.1f} {o['p95_ms']:7.1f}  {row['floor_name']:42} "
            f"{f['p50_ms']:7.1f} {f['p95_ms']:7.1f} {row['ratio_p50']:5.2f}x "
            f"{row['ratio_p95']:5.2f}x  {target}"
            + (f" ({row['errors']} errors)" if row["errors"] else "")
        )
        if "direct" in row:
            d = row["direct"]
            lines.append(
                f"{'  direct: ' + row['direct_name']:50} {d['p50_ms']:7.1f} {d['p95_ms']:7.1f}"
                f"  Temporal overhead (p50 ours - direct): {row['temporal_overhead_ms']:.1f} ms;"
                f" ours / (floor + direct): {row['ratio_p50_vs_floor_plus_direct']:.2f}x"
            )
        if "direct_with_snapshot" in row:
            d = row["direct_with_snapshot"]
            lines.append(
                f"{'  direct: run + snapshot (the worker does both)':50} "
                f"{d['p50_ms']:7.1f} {d['p95_ms']:7.1f}"
            )
        if "floor_with_plugin" in row:
            f = row["floor_with_plugin"]
            lines.append(
                f"{'  floor on a worker with our SessionsPlugin':50} "
                f"{f['p50_ms']:7.1f} {f['p95_ms']:7.1f}  ours / it: "
                f"{row['ours']['p50_ms'] / f['p50_ms']:.2f}x"
            )
        for name, part in row.get("parts", {}).items():
            lines.append(f"{'  part: ' + name:50} {part['p50_ms']:7.1f} {part['p95_ms']:7.1f}")
        for who, spans in row.get("history", {}).items():
            lines.append(f"  history ({who}): " + ", ".join(f"{k}={v}" for k, v in spans.items()))
    if "throughput" not in results:  # --latency-only
        return "\n".join(lines)
    t = results["throughput"]
    lines.append("")
    lines.append(
        f"throughput, {t['sessions']} sessions x {t['calls_each']} calls at once "
        f"(median of {t['rounds']} interleaved rounds):"
    )
    for name in THROUGHPUT_KINDS:
        r = t[name]
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_ms_per_call"].items())
        lines.append(
            f"  {name:34} {r['calls_per_second']:7.1f} calls/s  p50 {r.get('p50_ms', 0):6.1f} "
            f"p95 {r.get('p95_ms', 0):6.1f} ms  errors {r['errors']}  CPU ms per call: {cpu}"
        )
    lines.append(
        f"  ours / update + local activity: {t['ratio']:.2f}x  "
        + _verdict(t["met"], f">= {t['target']}x")
    )
    load = results["load"]
    lines.append("")
    for key in ("creations_floor", "creations_ours"):
        c = load[key]
        lines.append(
            f"{c['what']:62} {c['wall_ms']:7.0f} ms vs one {c['one_ms']:6.0f} ms: "
            f"{c['ratio']:.2f}x  " + _verdict(c.get("met"), "<= 1.3x")
        )
    for key in ("held", "held_evicted"):
        h = load.get(key)
        if h:
            lines.append(
                f"{h['sessions']} idle sessions held, worker cache {h['worker_cache']}: RSS "
                f"{h['worker_rss_before_mb']} -> {h['worker_rss_after_mb']} MB "
                f"({h['per_session_kb']} KB each)  " + _verdict(h.get("met"), "<= 400 MB")
            )
    m = results["machine"]
    lines.append("")
    lines.append(
        f"{m['cpus']} cpus; 1-minute load average before {m['load_before'][0]:.2f}, "
        + ", ".join(f"after {k} {v[0]:.2f}" for k, v in m.get("load_by_section", {}).items())
    )
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke check")
    parser.add_argument(
        "--chart",
        type=Path,
        help="where to draw the chart (default docs/bench.png on a full run, none on --quick)",
    )
    parser.add_argument("--samples", type=int, help="samples per latency path (default 200)")
    parser.add_argument(
        "--latency-only", action="store_true", help="the latency paths alone (no chart)"
    )
    args = parser.parse_args()
    results = asyncio.run(main(args.quick, args.samples, args.latency_only))
    print(report(results))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")
    chart = args.chart or (None if args.quick or args.latency_only else ROOT / "docs" / "bench.png")
    if chart is not None:
        from bench.chart import draw

        draw(results, chart)
        print(f"wrote {chart}")


if __name__ == "__main__":
    cli()
