"""Histories of the main flows replay against the current workflow code.

``test_fresh_histories_replay`` records the flows now and replays them. The committed files in
``tests/histories/`` were recorded by earlier code: if a change breaks them, sessions running in
production would break too. Record them anew (only for an intended, versioned change) with
``RECORD_HISTORIES=1 pytest tests/test_replay.py``.
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
from workflows.patches import SESSIONS_V2


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
        if name != "warmup":  # a session takes every change by one patch marker (patches.py)
            assert _patch_markers(history) == [SESSIONS_V2], name
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
        "explicit_reinitialize_destroy",
        "temporary",
        "ttl_expiry",
        "recovery_after_crash",
        "migration_after_graceful_shutdown",
        "continued_as_new",
        # Recorded with local calls (the fast path) and with the pinned-queue fallback:
        "explicit_reinitialize_destroy_local_calls",
        "temporary_local_calls",
        "recovery_after_crash_local_calls",
        "fallback_pinned_calls",
        # A miss remembered: later calls straight to the pinned queue (remember-elsewhere).
        "fallback_remember_elsewhere",
        # Every change by one patch marker (workflows/patches.py).
        "explicit_reinitialize_destroy_sessions_v2",
        "managed_pause_resume_sessions_v2",
        "temporary_sessions_v2",
        "ttl_expiry_sessions_v2",
    }
