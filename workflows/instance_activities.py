"""The activities a session runs on its instance: initialize, call a tool, release, and ask
the holding worker whether it is alive.

Each function is one activity invocation with its options; failures come back as values
(``ToolOutcome`` codes, or ``Rejected``), never as exceptions a handler could let escape.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

from contract import (
    CleanupInput,
    ErrorCode,
    InitializeInput,
    InstanceInfo,
    SessionInput,
    ToolCallInput,
    ToolOutcome,
)
from contract import activities as stubs
from contract.limits import TOOL_TIMEOUT_MARGIN, tool_timeout
from workflows.activity_options import (
    ALIVE_WITHIN,
    HEARTBEAT_TIMEOUT,
    INITIALIZE_TIMEOUT,
    LIFECYCLE_RETRY,
    NO_RETRY,
    PROBE_AFTER,
    SCHEDULE_TO_START,
)
from workflows.failures import Rejected, describe_failure, worker_lost
from workflows.views import call_summary

#: A call that may run longer than this stays a regular activity (heartbeats, and the session
#: keeps answering): a local activity holds the workflow task, so a query or another request to
#: the same session waits for it (up to ~8 s, when the SDK heartbeats the task).
LOCAL_CALL_MAX_SECONDS = 30.0


def call_timeout(call: ToolCallInput, instance: InstanceInfo) -> float:
    """How long a call may run: its ``timeout`` parameter, else its tool's declared default."""
    if call.params.get("timeout") is not None:
        return tool_timeout(call.params)
    spec = next((t for t in instance.tools if t.name == call.tool), None)
    declared = (spec.params_schema.get("properties", {}) if spec else {}).get("timeout", {})
    return tool_timeout({"timeout": declared.get("default")})


def runs_locally(call: ToolCallInput, instance: InstanceInfo) -> bool:
    """Short enough to hold the workflow task: see ``LOCAL_CALL_MAX_SECONDS``."""
    return call_timeout(call, instance) <= LOCAL_CALL_MAX_SECONDS


def new_session_id(resource_type: str) -> str:
    """A new instance id (AgentFlow's ``session_id``), made deterministically."""
    return f"{resource_type}-{workflow.uuid4().hex[:12]}"


def initialize_input(
    inp: SessionInput, session_id: str, config: dict[str, Any], restore: dict[str, Any] | None
) -> InitializeInput:
    return InitializeInput(
        sandbox_id=inp.sandbox_id,
        resource_type=inp.resource_type,
        session_id=session_id,
        config=config,
        workflow_id=workflow.info().workflow_id,
        restore=restore,
    )


async def start_instance(
    inp: SessionInput, config: dict[str, Any], restore: dict[str, Any] | None = None
) -> InstanceInfo:
    """A new instance on some worker; raises ``Rejected(INITIALIZE_FAILED)`` when it fails."""
    init = initialize_input(inp, new_session_id(inp.resource_type), config, restore)
    try:
        # On the worker running this workflow task: no task queue round trip, and that worker
        # keeps the instance (its pinned queue is in the answer).
        return await workflow.execute_local_activity(
            stubs.initialize,
            init,
            start_to_close_timeout=INITIALIZE_TIMEOUT,
            retry_policy=LIFECYCLE_RETRY,
            summary=f"initialize a {inp.resource_type} instance",
        )
    except (ActivityError, ApplicationError) as exc:  # local activities raise the latter
        raise Rejected(_initialize_code(exc), describe_failure(exc)) from None


def _initialize_code(exc: BaseException) -> int:
    """4012 when the worker refused the config (above what it allows), else 4007."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type == str(
            int(ErrorCode.PERMISSION_DENIED)
        ):
            return ErrorCode.PERMISSION_DENIED
        cause = cause.__cause__
    return ErrorCode.INITIALIZE_FAILED


A = TypeVar("A")


async def on_its_worker(
    instance: InstanceInfo, activity: Callable[[A], Any], arg: A, **options: Any
) -> Any:
    """``activity`` on the worker that holds ``instance``, declared lost within seconds.

    Not started within ``PROBE_AFTER``, the call asks that worker whether it is alive, on a queue
    the worker keeps for this alone: a dead worker answers nothing and the schedule-to-start
    timeout is raised (lost); a live one that is only busy (every slot taken) answers, and the
    call waits for it again, asking every ``SCHEDULE_TO_START``. A call that timed out before it
    started never ran, so sending it again runs it once.
    """
    wait = PROBE_AFTER
    while True:
        try:
            return await workflow.execute_activity(
                activity,
                arg,
                task_queue=instance.task_queue,
                schedule_to_start_timeout=wait,
                **options,
            )
        except ActivityError as exc:
            if not _not_started(exc) or not await _alive(instance):
                raise
            wait = SCHEDULE_TO_START


def _not_started(exc: ActivityError) -> bool:
    cause = exc.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


async def _alive(instance: InstanceInfo) -> bool:
    try:
        await workflow.execute_activity(
            stubs.alive,
            task_queue=stubs.liveness_queue(instance.task_queue),
            schedule_to_start_timeout=ALIVE_WITHIN,
            start_to_close_timeout=ALIVE_WITHIN,
            retry_policy=NO_RETRY,
            summary=f"is worker {instance.worker} alive?",
        )
    except ActivityError:
        return False
    return True


async def release(instance: InstanceInfo, resource_type: str) -> str | None:
    """Clean the instance up on its worker; answers why it could not (its worker is gone)."""
    try:
        await on_its_worker(
            instance,
            stubs.cleanup,
            CleanupInput(session_id=instance.session_id, resource_type=resource_type),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_attempts=2),
            summary=f"clean up {instance.session_id}",
        )
    except ActivityError as exc:
        return describe_failure(exc)
    return None


async def snapshot(instance: InstanceInfo, resource_type: str) -> ToolOutcome:
    """The instance's state now, on the worker that holds it (``ToolOutcome.snapshot``; None
    when unchanged since the last); a lost worker answers RESOURCE_LOST."""
    try:
        outcome: ToolOutcome = await on_its_worker(
            instance,
            stubs.snapshot,
            CleanupInput(session_id=instance.session_id, resource_type=resource_type),
            start_to_close_timeout=timedelta(seconds=300),
            retry_policy=NO_RETRY,
            summary=f"snapshot {instance.session_id}",
        )
        return outcome
    except ActivityError as exc:
        code = ErrorCode.RESOURCE_LOST if worker_lost(exc) else ErrorCode.INTERNAL
        return ToolOutcome(code=code, message=describe_failure(exc))


async def call_on_instance(instance: InstanceInfo, call: ToolCallInput) -> ToolOutcome:
    """The call on the worker that holds the instance; a lost worker answers RESOURCE_LOST."""
    timeout = tool_timeout(call.params) + TOOL_TIMEOUT_MARGIN
    try:
        outcome: ToolOutcome = await on_its_worker(
            instance,
            stubs.call_tool,
            call,
            summary=call_summary(call.tool, call.params),
            start_to_close_timeout=timedelta(seconds=timeout),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=NO_RETRY,
        )
        return outcome
    except ActivityError as exc:
        code = ErrorCode.RESOURCE_LOST if worker_lost(exc) else ErrorCode.INTERNAL
        return ToolOutcome(code=code, message=describe_failure(exc))


async def call_here(call: ToolCallInput) -> ToolOutcome:
    """The call as a local activity on the worker running this workflow task: no task queue in
    between. Answers ``held_elsewhere`` (and runs nothing) when that worker lacks the instance.

    A local activity cannot heartbeat: a worker that dies mid-call is noticed when its workflow
    task times out (10 s); the next worker finds no instance here and falls back to the pinned
    queue, whose schedule-to-start timeout declares the instance lost. The tool is not run twice.
    """
    return await _call_locally(
        call, tool_timeout(call.params) + TOOL_TIMEOUT_MARGIN, lost=ErrorCode.RESOURCE_LOST
    )


async def call_once(inp: SessionInput, call: ToolCallInput, config: dict[str, Any]) -> ToolOutcome:
    """A temporary session's one call: create, call and clean up in one activity."""
    assert call.session_id is not None
    call.initialize = initialize_input(inp, call.session_id, config, None)
    # One round trip: a local activity on the worker running this workflow task. The 60 s over
    # the call's own timeout are for making and cleaning up the instance.
    timeout = tool_timeout(call.params) + TOOL_TIMEOUT_MARGIN
    return await _call_locally(call, timeout + 60, lost=ErrorCode.INTERNAL)


async def _call_locally(call: ToolCallInput, timeout: float, *, lost: ErrorCode) -> ToolOutcome:
    """``call_tool`` as a local activity; a failure comes back as an outcome, with ``lost`` as
    its code when the activity timed out (the worker or the tool hung)."""
    try:
        return await workflow.execute_local_activity(
            stubs.call_tool,
            call,
            start_to_close_timeout=timedelta(seconds=timeout),
            retry_policy=NO_RETRY,
            summary=call_summary(call.tool, call.params),
        )
    except (ActivityError, ApplicationError) as exc:
        timed_out = isinstance(exc, ActivityError) and worker_lost(exc)
        code = lost if timed_out else ErrorCode.INTERNAL
        return ToolOutcome(code=code, message=describe_failure(exc))
