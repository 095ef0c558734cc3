"""Latency of each of our paths beside its floor (and the direct, in-process tool beside both).

The paths, their floors and targets are listed in :mod:`bench.run`'s docstring.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHandle

from backends.bash import BashBackend
from bench.floor import PLUGIN_FLOOR_QUEUE, FloorWorkflow, new_floor, start_floor
from bench.history import history
from bench.measure import After, Errors, Op, PathSpec, Variant, measure, stats
from client import Sandbox, SessionNotFound
from client.workflow_api import SessionWorkflows
from contract import BatchRequest, ExecuteRequest, session_workflow_id

ECHO = {"command": "echo hi"}
BATCH = 10  # calls in one execute_batch


@dataclass
class Floors:
    """Long-lived floor workflows: update + local activity, update + activity, and both on a
    worker that carries our SessionsPlugin (what the plugin costs)."""

    local: WorkflowHandle[Any, Any]
    activity: WorkflowHandle[Any, Any]
    plugin_local: WorkflowHandle[Any, Any]
    plugin_activity: WorkflowHandle[Any, Any]

    @classmethod
    async def start(cls, client: Client, pinned: str) -> Floors:
        plugin = f"{pinned}-plugin"
        return cls(
            await new_floor(client, pinned),
            await new_floor(client, pinned),
            await new_floor(client, plugin, PLUGIN_FLOOR_QUEUE),
            await new_floor(client, plugin, PLUGIN_FLOOR_QUEUE),
        )

    @staticmethod
    def updates(handle: WorkflowHandle[Any, Any], update: Any) -> Op:
        async def op(i: int) -> None:
            await handle.execute_update(update, "x")

        return op

    async def finish(self) -> None:
        for f in (self.local, self.activity, self.plugin_local, self.plugin_activity):
            await f.execute_update(FloorWorkflow.finish)


class Latency:
    """The latency rows of one run: each path, its floor and what is measured beside them."""

    def __init__(self, client: Client, pinned: str, fallback_queue: str, n: int) -> None:
        self.client = client
        self.pinned = pinned
        self.fallback_queue = fallback_queue
        self.n = n
        self.errors = Errors()
        self.rows: list[dict[str, Any]] = []
        # The direct floor: the same tool on the same backend, in this process, no Temporal.
        self.backend = BashBackend()

    def new_sandbox(self, **options: Any) -> Sandbox:
        return Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=self.client, **options)

    def executes(self, label: str, sb: Sandbox, tool: str, params: dict[str, Any]) -> Op:
        async def op(i: int) -> None:
            self.errors.check(label, await sb.execute(tool, params))

        return op

    async def run(self) -> list[dict[str, Any]]:
        floors = await Floors.start(self.client, self.pinned)
        info = await self.backend.initialize("bench", {})
        sandbox = self.new_sandbox()
        await sandbox.create_session("bash")
        await self.explicit(floors, sandbox, info)
        await self.fallback(floors, info)
        await self.temporary()
        await self.create()
        await self.shared(floors, sandbox)
        await self.batch(sandbox)
        await sandbox.destroy_session("bash")
        await self.backend.cleanup("bench", info)
        await floors.finish()
        return self.rows

    def direct_ops(self, info: dict[str, Any]) -> tuple[Op, Op]:
        """The tool's own work in-process, and the same plus the snapshot the worker takes."""

        async def run(i: int) -> None:
            await self.backend.run(ECHO["command"], session_info=info)

        async def run_snapshot(i: int) -> None:
            await self.backend.run(ECHO["command"], session_info=info)
            await self.backend.snapshot(info)

        return run, run_snapshot

    async def explicit(self, floors: Floors, sandbox: Sandbox, info: dict[str, Any]) -> None:
        """1. Explicit session, instance on the worker that runs the workflow task: a local
        activity. (No no-op tool beside it: a tool without a ``timeout`` parameter, as
        testkit's, may run for the 300 s default, more than a local call may hold the workflow
        task, so it takes the pinned queue; bash:run's default timeout is 30 s.)"""
        direct, with_snapshot = self.direct_ops(info)
        spec = PathSpec(
            "bash:run echo, explicit session (local activity)",
            "explicit",
            self.executes("explicit", sandbox, "bash:run", ECHO),
            "update + local activity",
            Floors.updates(floors.local, FloorWorkflow.with_local_activity),
            1.3,
            "BashBackend.run, in-process",
            direct,
            beside={
                "direct_with_snapshot": with_snapshot,
                "floor_with_plugin": Floors.updates(
                    floors.plugin_local, FloorWorkflow.with_local_activity
                ),
            },
        )
        rows = await measure(self.n, spec, self.errors)
        session = session_workflow_id(sandbox.sandbox_id, "bash")
        rows[0]["history"] = {
            "ours": await history(self.client.get_workflow_handle(session)),
            "floor": await history(floors.local),
            "floor_with_plugin": await history(floors.plugin_local),
        }
        self.rows += rows

    async def fallback(self, floors: Floors, info: dict[str, Any]) -> None:
        """2. The fallback path: every call through the holding worker's pinned queue."""
        remote = self.new_sandbox(task_queue=self.fallback_queue)
        await remote.create_session("bash")
        await remote.create_session("testkit")
        direct, with_snapshot = self.direct_ops(info)
        spec = PathSpec(
            "bash:run echo, fallback (pinned-queue activity)",
            "fallback",
            self.executes("fallback", remote, "bash:run", ECHO),
            "update + activity on a worker queue",
            Floors.updates(floors.activity, FloorWorkflow.with_activity),
            1.25,
            "BashBackend.run, in-process",
            direct,
            beside={
                "direct_with_snapshot": with_snapshot,
                "floor_with_plugin": Floors.updates(
                    floors.plugin_activity, FloorWorkflow.with_activity
                ),
            },
            variants=[
                Variant(
                    "fallback, no-op plugin tool (testkit:pid)",
                    "fallback_noop",
                    self.executes("fallback_noop", remote, "testkit:pid", {}),
                )
            ],
        )
        rows = await measure(self.n, spec, self.errors)
        session = session_workflow_id(remote.sandbox_id, "bash")
        rows[0]["history"] = {
            "ours": await history(self.client.get_workflow_handle(session)),
            "floor": await history(floors.activity),
            "floor_with_plugin": await history(floors.plugin_activity),
        }
        self.rows += rows
        await remote.destroy_session(["bash", "testkit"])

    async def temporary(self) -> None:
        """3. Temporary execute: update-with-start, one local activity (initialize, call,
        cleanup); beside it two of its parts."""
        temp = self.new_sandbox()
        temp_ids: list[str] = []
        ends: list[float] = []

        def temporary(label: str, tool: str, params: dict[str, Any]) -> Op:
            async def op(i: int) -> None:
                envelope = await temp.execute(tool, params)
                self.errors.check(label, envelope, temporary_session=True)
                if label == "temporary":
                    temp_ids.append(envelope["meta"]["workflow_id"])

            return op

        async def floor(i: int) -> After:
            handle = await start_floor(
                self.client, self.pinned, FloorWorkflow.with_local_activity, "x"
            )
            return After(lambda: handle.execute_update(FloorWorkflow.finish))

        async def direct(i: int) -> None:
            one = await self.backend.initialize("bench", {})
            await self.backend.run(ECHO["command"], session_info=one)
            started = time.perf_counter()
            await self.backend.cleanup("bench", one)
            ends.append((time.perf_counter() - started) * 1000)

        spec = PathSpec(
            "temporary execute (no session)",
            "temporary",
            temporary("temporary", "bash:run", ECHO),
            "update-with-start + local activity",
            floor,
            1.5,
            "BashBackend init + run + cleanup (a fresh jail)",
            direct,
            parts={"the look for a session first (no run: refused)": self.lookup()},
            variants=[
                Variant(
                    "temporary execute, no-op plugin (testkit:pid)",
                    "temporary_noop",
                    temporary("temporary_noop", "testkit:pid", {}),
                )
            ],
        )
        rows = await measure(self.n, spec, self.errors)
        rows[0]["parts"]["the jail's end (BashBackend.cleanup)"] = stats(ends)
        handles = [self.client.get_workflow_handle(w) for w in temp_ids[-20:]]
        rows[0]["history"] = {"ours": await history(*handles)}
        self.rows += rows

    def lookup(self) -> Op:
        """What a call with no session sends first: the update to the sandbox's session, which
        the server refuses (no run of it exists)."""
        sessions = SessionWorkflows(self.client)

        async def op(i: int) -> None:
            request = ExecuteRequest(tool="bash:run", params=ECHO, request_id=uuid.uuid4().hex)
            try:
                await sessions.execute(session_workflow_id(f"bench-none-{i}", "bash"), request)
            except SessionNotFound:
                return
            raise AssertionError("a sandbox with no session answered an update")

        return op

    async def create(self) -> None:
        """4. create_session, then the first call."""

        async def ours(i: int) -> After:
            sb = self.new_sandbox()
            view = await sb.create_session("bash")
            self.errors.check(
                "create", {"code": 0 if view["status"] == "success" else 1, "meta": {}}
            )
            self.errors.check("create", await sb.execute("bash:run", ECHO))
            return After(lambda: sb.destroy_session("bash"))

        async def floor(i: int) -> After:
            handle = await start_floor(
                self.client, self.pinned, FloorWorkflow.with_local_activity, "x"
            )
            await handle.execute_update(FloorWorkflow.with_local_activity, "x")
            return After(lambda: handle.execute_update(FloorWorkflow.finish))

        async def direct(i: int) -> After:
            one = await self.backend.initialize("bench", {})
            await self.backend.run(ECHO["command"], session_info=one)
            return After(lambda: self.backend.cleanup("bench", one))

        spec = PathSpec(
            "create_session -> first result",
            "create",
            ours,
            "(update-with-start + LA) + (update + LA)",
            floor,
            1.3,
            "BashBackend init + run (a fresh jail)",
            direct,
        )
        self.rows += await measure(self.n, spec, self.errors)

    async def shared(self, floors: Floors, sandbox: Sandbox) -> None:
        """5. A shared tool (no session): one update on the sandbox's shared-tools workflow, one
        local activity. The plugin package under tests/ provides the no-op ``tally``."""
        await sandbox.warmup(["tally"])
        spec = PathSpec(
            "shared tool (tally:ping, no-op)",
            "shared",
            self.executes("shared", sandbox, "tally:ping", {}),
            "update + local activity",
            Floors.updates(floors.local, FloorWorkflow.with_local_activity),
            1.25,
        )
        self.rows += await measure(self.n, spec, self.errors)

    async def batch(self, sandbox: Sandbox) -> None:
        """6. A batch of calls in one update vs the same calls one update each."""
        sessions = SessionWorkflows(self.client)
        session = session_workflow_id(sandbox.sandbox_id, "bash")

        async def batch(i: int) -> None:
            calls = [
                ExecuteRequest(tool="bash:run", params=ECHO, request_id=uuid.uuid4().hex)
                for _ in range(BATCH)
            ]
            for envelope in await sessions.execute_batch(session, BatchRequest(calls=calls)):
                self.errors.check("batch", envelope.model_dump(mode="json"))

        async def sequential(i: int) -> None:
            for _ in range(BATCH):
                self.errors.check("sequential", await sandbox.execute("bash:run", ECHO))

        spec = PathSpec(
            f"execute_batch of {BATCH} echo calls",
            "batch",
            batch,
            f"{BATCH} sequential executes (ours)",
            sequential,
            None,
            labels=("batch", "sequential"),
            samples=max(10, self.n // 4),
        )
        (row,) = await measure(self.n, spec, self.errors)
        row["per_call_ms"] = round(row["ours"]["p50_ms"] / BATCH, 2)
        self.rows.append(row)
