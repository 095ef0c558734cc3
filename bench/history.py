"""Where a workflow's time went, from its history's timestamps."""

from __future__ import annotations

import statistics
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle


async def history(*handles: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """Medians (ms) over the workflows' histories: workflow task scheduled -> started (dispatch
    to a worker) and started -> completed (the worker's turn, local activities included),
    activity scheduled -> started (dispatch through the queue) and started -> completed,
    activity completed -> next workflow task started."""
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
