"""Lifecycle and tool-call activities over one worker's backends and live instances."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.call_deadline import call_bound, run_with_deadline
from activities.call_ledger import CallLedger
from activities.instances import InstanceRegistry, LiveInstance
from activities.live_output import LiveOutput
from activities.warm_pool import WarmPool
from backends import BackendHost, ToolCallError
from backends.jail_policy import WORKER, JailCeiling, JailPolicyError
from contract import (
    CleanupInput,
    ErrorCode,
    InitializeInput,
    InstanceInfo,
    InstanceReleased,
    ToolCallInput,
    ToolOutcome,
    WarmupInput,
    WarmupResult,
)
from contract.activities import ALIVE, CALL_TOOL, CLEANUP, INITIALIZE, WARMUP

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("durable_sessions")

#: A pinned call heartbeats this often, so a dead worker is noticed within the heartbeat timeout.
HEARTBEAT_EVERY = 1.0
#: The ledger's instance keys for calls that have no instance of their own.
TEMPORARY = ":temporary"
SHARED = ":shared"

Notify = Callable[[str, InstanceReleased], Awaitable[None]]


class SessionActivities:
    """Activities bound to a worker's backends.

    ``initialize`` runs on the shared task queue; whichever worker takes it keeps the instance
    and answers with its own ``task_queue``, where the workflow sends every later call.
    """

    def __init__(
        self,
        host: BackendHost,
        registry: InstanceRegistry,
        *,
        task_queue: str,
        local_calls: bool = True,
        ceiling: JailCeiling | None = None,
    ) -> None:
        self.host = host
        #: What a session's config may ask of its sandbox here (default: nothing above the
        #: defaults); the operator's, so no client can go past it.
        self.ceiling = ceiling if ceiling is not None else JailCeiling()
        self.registry = registry
        self.task_queue = task_queue
        self.worker_id = task_queue
        #: Off: a local call answers "held elsewhere", so every call takes the pinned queue.
        self.local_calls = local_calls
        self.pool = WarmPool(self.worker_id)
        #: What ran here, by request id: a call Temporal hands over again is not run again.
        self.ledger = CallLedger()

    @activity.defn(name=WARMUP)
    async def warmup(self, inp: WarmupInput) -> WarmupResult:
        names = inp.resource_types if inp.resource_types is not None else list(self.host.backends)
        try:
            for name in names:
                self.pool.prefill(await self.host.ensure_warm(name))
        except ToolCallError as exc:
            raise exc.as_failure() from exc
        return WarmupResult(worker=self.worker_id, warmed=names, tools=self.host.specs())

    @activity.defn(name=INITIALIZE)
    async def initialize(self, inp: InitializeInput) -> InstanceInfo:
        instance = await self._create(inp)
        return InstanceInfo(
            session_id=inp.session_id,
            task_queue=self.task_queue,
            worker=self.worker_id,
            data=instance.backend.describe(instance.session_info),
            # An instance's own tools (an mcp session's servers') are its session's too.
            tools=[
                *self.host.specs(inp.resource_type),
                *instance.backend.instance_tools(instance.session_info),
            ],
            restored=inp.restore is not None,
        )

    @activity.defn(name=CALL_TOOL)
    async def call_tool(self, inp: ToolCallInput) -> ToolOutcome:
        if inp.initialize is not None:  # a temporary session: its instance is made per try
            return await self.ledger.run_once(
                TEMPORARY, inp.request_id, lambda: self._call_once(inp), one_at_a_time=False
            )
        if inp.session_id is None:
            return await self.ledger.run_once(
                SHARED, inp.request_id, lambda: self._call_shared(inp)
            )
        local = activity.info().is_local
        instance = self.registry.get(inp.session_id) if self.local_calls or not local else None
        if instance is None:
            return ToolOutcome(
                code=ErrorCode.RESOURCE_LOST,
                message=f"instance {inp.session_id} is not held by worker {self.worker_id}",
                held_elsewhere=local,
            )
        # A streaming call (never local: a local activity holds the workflow task the stream
        # needs) publishes its output from the tool's task as it arrives.
        live = LiveOutput.for_activity(inp.request_id) if inp.stream and not local else None
        call = asyncio.create_task(
            self.ledger.run_once(
                inp.session_id,
                inp.request_id,
                lambda: self._invoke(inp, instance.backend.name, instance.session_info),
            ),
            context=live.context() if live is not None else None,
        )
        if live is not None:
            live.follow(call)
        while True:
            done, _ = await asyncio.wait({call}, timeout=HEARTBEAT_EVERY)
            if done:
                break
            if not local:  # a local activity's liveness is its workflow task's
                activity.heartbeat()
        outcome = call.result()
        if live is not None:
            await live.close()  # the output reaches the session before the answer does
        outcome.snapshot = await self._snapshot(instance)
        return outcome

    @activity.defn(name=ALIVE)
    async def alive(self) -> str:
        """This worker is up: answered on its liveness queue, which long calls never fill."""
        return self.worker_id

    @activity.defn(name=CLEANUP)
    async def cleanup(self, inp: CleanupInput) -> None:
        instance = self.registry.pop(inp.session_id)
        self.ledger.forget(inp.session_id)
        if instance is not None:
            self._gauge_live(inp.resource_type)
            await instance.backend.cleanup(self.worker_id, instance.session_info)

    def _gauge_live(self, resource_type: str) -> None:
        """Live instances of a resource type on this worker (a gauge in the worker's metrics)."""
        activity.metric_meter().create_gauge(
            "sessions_live_instances", "live session instances on this worker"
        ).with_additional_attributes({"resource_type": resource_type}).set(
            self.registry.count(resource_type)
        )

    async def _create(self, inp: InitializeInput) -> LiveInstance:
        try:
            self.ceiling.check(inp.config, WORKER)
        except JailPolicyError as exc:  # refused before anything starts; never retried
            raise ToolCallError(ErrorCode.PERMISSION_DENIED, exc.message).as_failure() from None
        try:
            backend = await self.host.ensure_warm(inp.resource_type)
            self.pool.prefill(backend)
            info = await self.pool.initialize(backend, inp.config)
        except ToolCallError as exc:
            raise exc.as_failure() from exc
        except Exception as exc:
            # Bad config fails the same way on every try: do not retry it.
            raise ApplicationError(
                f"{inp.resource_type} initialize failed: {type(exc).__name__}: {exc}",
                type=str(int(ErrorCode.INITIALIZE_FAILED)),
                non_retryable=True,
            ) from exc
        instance = LiveInstance(inp.session_id, inp.sandbox_id, backend, info, inp.workflow_id)
        if inp.restore is not None:
            try:
                await backend.restore(info, inp.restore)
            except Exception:
                # A fresh instance is still better than none.
                log.exception("restoring %s failed", inp.session_id)
        self.registry.add(instance)
        self._gauge_live(inp.resource_type)
        return instance

    async def _snapshot(self, instance: LiveInstance) -> dict[str, object] | None:
        try:
            return await instance.backend.snapshot(instance.session_info)
        except Exception:
            log.exception("snapshot of %s failed", instance.session_id)
            return None

    async def _invoke(
        self, inp: ToolCallInput, resource_type: str, session_info: dict[str, Any] | None
    ) -> ToolOutcome:
        """The backend's tool call, as a span (child of the activity's) and a duration metric."""
        attributes = {
            "session.tool": inp.tool,
            "session.workflow_id": activity.info().workflow_id or "",
            "session.request_id": inp.request_id,
        }
        if inp.session_id:
            attributes["session.id"] = inp.session_id
        with _tracer.start_as_current_span(f"tool {inp.tool}", attributes=attributes) as span:
            # Cancelled past its bound, with its processes (activities/call_deadline.py).
            params, seconds = call_bound(inp.params, self._declares_timeout(inp.tool))
            outcome = await run_with_deadline(
                lambda: self.host.invoke(inp.tool, params, session_info, strict=inp.strict_params),
                seconds,
                inp.tool,
            )
            span.set_attribute("session.result_code", outcome.code)
        activity.metric_meter().create_histogram_float(
            "sessions_tool_duration", "time a tool ran on its backend", "ms"
        ).with_additional_attributes(
            {"resource_type": resource_type, "tool": inp.tool, "code": str(outcome.code)}
        ).record(outcome.execution_time_ms)
        return outcome

    def _declares_timeout(self, tool: str) -> bool:
        binding = self.host.tools.get(tool)
        return binding is not None and "timeout" in binding.params_model.model_fields

    async def _call_shared(self, inp: ToolCallInput) -> ToolOutcome:
        """A shared tool: warmed once per process, no instance, no session."""
        try:
            spec = self.host.binding(inp.tool).spec
        except ToolCallError as exc:
            return ToolOutcome(code=exc.code, message=exc.message)
        if not spec.shared:
            return ToolOutcome(
                code=ErrorCode.UNKNOWN_TOOL,
                message=f"{inp.tool} is not a shared tool; it needs a {spec.resource_type} session",
            )
        outcome = await self._invoke(inp, spec.resource_type, None)
        outcome.shared = True
        return outcome

    async def _call_once(self, inp: ToolCallInput) -> ToolOutcome:
        """A temporary session in one activity: create, call, clean up, on this worker."""
        assert inp.initialize is not None
        binding = self.host.tools.get(inp.tool)
        if binding is not None and binding.spec.shared:
            return await self._call_shared(inp.model_copy(update={"session_id": None}))
        try:
            params = call_bound(inp.params, self._declares_timeout(inp.tool))[0]
            self.host.validate(inp.tool, params, strict=inp.strict_params)
            instance = await self._create(inp.initialize)
        except ToolCallError as exc:
            return ToolOutcome(code=exc.code, message=exc.message)
        except ApplicationError as exc:
            return ToolOutcome(code=int(exc.type or ErrorCode.INTERNAL), message=exc.message)
        try:
            return await self._invoke(inp, instance.backend.name, instance.session_info)
        finally:
            self.registry.pop(instance.session_id)
            self._gauge_live(instance.backend.name)
            try:  # before the answer: a temporary session leaves nothing behind it
                await instance.backend.cleanup(self.worker_id, instance.session_info)
            except Exception:
                log.exception("cleanup of temporary session %s failed", instance.session_id)

    async def release_all(self, notify: Notify | None = None) -> int:
        """The worker is stopping: snapshot and clean up every live instance, and tell each
        session (``notify``) so its next call makes a new instance elsewhere, restored."""
        await self.pool.close()
        live = self.registry.drain()
        for instance in live:
            snapshot = await self._snapshot(instance)
            try:
                await instance.backend.cleanup(self.worker_id, instance.session_info)
            except Exception:
                log.exception("cleanup of %s failed at shutdown", instance.session_id)
            if notify is not None and instance.workflow_id:
                try:
                    await notify(
                        instance.workflow_id,
                        InstanceReleased(session_id=instance.session_id, snapshot=snapshot),
                    )
                except Exception:
                    log.exception("could not tell %s its instance moved", instance.workflow_id)
        return len(live)
