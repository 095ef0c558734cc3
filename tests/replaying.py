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
    """Replay now; with RECORD_HISTORIES=1 also save it under tests/histories/<name>.json."""
    if os.environ.get("RECORD_HISTORIES"):
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(history.to_json())
    await replayer().replay_workflow(history)


async def replay_workflow(
    client: Client, workflow_id: str, name: str, run_id: str | None = None
) -> None:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    await replay(history, name)
