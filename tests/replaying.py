"""Replay a workflow's history against the current code; optionally keep it for CI."""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from runtime.plugin import SessionsPlugin
from workflows import SessionWorkflow, SharedToolsWorkflow, WarmupWorkflow

HISTORIES = Path(__file__).parent / "histories"


def replayer() -> Replayer:
    return Replayer(
        workflows=[SessionWorkflow, SharedToolsWorkflow, WarmupWorkflow],
        plugins=[SessionsPlugin()],  # the worker's data converter and interceptors, by one path
    )


async def replay(history: WorkflowHistory, name: str) -> None:
    """Replay now, and keep the history when ``RECORD_HISTORIES`` is set.

    ``RECORD_HISTORIES=1`` saves tests/histories/<name>.json (the baseline: replaces it, so only
    when no running session can have the old one). ``RECORD_HISTORIES=<patch-id>`` saves
    <name>_<patch-id>.json beside it: a versioned change keeps the histories recorded before it
    and adds the new path's (docs/versioning.md).
    """
    record = os.environ.get("RECORD_HISTORIES")
    if record:
        HISTORIES.mkdir(exist_ok=True)
        path = HISTORIES / (f"{name}.json" if record == "1" else f"{name}_{record}.json")
        path.write_text(history.to_json())
    await replayer().replay_workflow(history)


async def replay_workflow(
    client: Client, workflow_id: str, name: str, run_id: str | None = None
) -> None:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    await replay(history, name)
