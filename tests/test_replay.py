"""Histories of the main flows replay against the current workflow code: the guard for every
workflow change.

``test_fresh_histories_replay`` records the flows now and replays them. The committed files in
``tests/histories/`` were recorded by earlier code (the 0.1.0 baseline, which asks for no patch):
if a change breaks them, sessions running in production would break too. Version such a change
instead (docs/versioning.md) and keep these files. Record them anew only when no running session
can have an old history (nothing released, or every such session closed), with
``RECORD_HISTORIES=1`` and the tests that record them: test_replay, test_durability,
test_restarts, test_fast_path and test_live_output (``tests.replaying.replay``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory

from client import Sandbox, SessionManager
from contract import DestroyRequest
from tests.conftest import new_sandbox_id
from tests.replaying import HISTORIES, replay, replayer
from workflows import SessionWorkflow

#: The patch ids the workflow code asks for: none in the 0.1.0 baseline. A versioned change adds
#: its id here; the id leaves with its last ``deprecate_patch`` call (docs/versioning.md).
#: ``lenient-params`` (workflows/execute_path.py): asked only by a call with an undeclared
#: parameter, which the main flows do not make.
PATCHES: frozenset[str] = frozenset({"lenient-params"})


async def _main_flows(client: Client) -> dict[str, str]:
    """Run each main flow to completion; answer {flow name: workflow id}."""
    sandbox = Sandbox(new_sandbox_id("replay"), client=client, session_ttl=2)
    await sandbox.create_session("bash")
    await sandbox.execute("bash:run", {"command": "cd /tmp && export A=1"})
    await sandbox.execute("bash:run", {"command": "sleep 5", "timeout": 0.5})
    await sandbox.execute("bash:run", {})  # rejected: leaves no trace
    await sandbox.refresh_sessions("bash")
    await sandbox.reinitialize("bash", {"cwd": "/"})
    await sandbox.execute("bash:run", {"command": "pwd"})
    await sandbox.destroy_session("bash")

    await sandbox.execute("bash:run", {"command": "echo temp"}, request_id="replay-temp")

    await sandbox.create_session("testkit")
    await sandbox.execute("testkit:boom", {})
    handle = client.get_workflow_handle_for(SessionWorkflow.run, f"{sandbox.sandbox_id}:testkit")
    await asyncio.wait_for(handle.result(), 30)  # expires after its 2 s TTL

    await sandbox.warmup(["bash"])
    warmups = [
        w.id
        async for w in client.list_workflows(
            f"WorkflowId STARTS_WITH '{sandbox.sandbox_id}:warmup'"
        )
    ]
    # Owner-scoped: idle, checkpoint, message, pause, resume from the checkpoint, destroy.
    manager = SessionManager(client=client, user_id="replay-user")
    record = await manager.create_session(
        "replay-user", "a", resource_type="bash", idle_seconds=0.5
    )
    sid = record.session_id
    await manager.execute(sid, "bash:run", {"command": "cd /tmp"})
    checkpoint = await manager.save_checkpoint(sid, {"n": 1})
    await asyncio.sleep(1)  # turns IDLE
    await manager.add_message(sid, "user", "hi")
    await manager.set_session_state(sid, "paused")
    await manager.set_session_state(sid, "active", checkpoint_id=checkpoint)
    await client.get_workflow_handle_for(SessionWorkflow.run, sid).execute_update(
        SessionWorkflow.destroy, DestroyRequest(user_id="replay-user")
    )
    return {
        "managed_pause_resume": sid,
        "explicit_reinitialize_destroy": f"{sandbox.sandbox_id}:bash",
        "temporary": f"{sandbox.sandbox_id}:bash:tmp-replay-temp",
        "ttl_expiry": f"{sandbox.sandbox_id}:testkit",
        **({"warmup": warmups[0]} if warmups else {}),
    }


async def test_fresh_histories_replay(client: Client, worker) -> None:
    flows = await _main_flows(client)
    for name, workflow_id in flows.items():
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        assert len(history.events) > 5
        assert set(_patch_markers(history)) <= PATCHES, name
        await replay(history, name)


def _patch_markers(history: WorkflowHistory) -> list[str]:
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    return [json.loads(m.details["patch-data"].payloads[0].data)["id"] for m in markers]


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_committed_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer().replay_workflow(history)


def test_committed_histories_exist() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} >= {
        # Local calls (the fast path), from the main flows:
        "explicit_reinitialize_destroy",
        "managed_pause_resume",
        "temporary",
        "ttl_expiry",
        "warmup",
        # A worker lost, a worker stopped, a run continued as new:
        "recovery_after_crash",
        "migration_after_graceful_shutdown",
        "continued_as_new",
        # The pinned-queue fallback, a miss remembered (later calls go straight there):
        "fallback_remember_elsewhere",
        # Streaming calls and their live output, carried across continue-as-new:
        "live_output_continued",
    }
