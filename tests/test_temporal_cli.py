"""Orchestration code that is not ours drives a session with plain JSON through the temporal CLI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from client import Sandbox
from runtime.embedded import temporal_binary


async def _run_temporal(address: str, *args: str) -> tuple[int, str]:
    """Run the `temporal` CLI against the test server; answer (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        "--address",
        address,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


async def _temporal(address: str, *args: str) -> Any:
    code, output = await _run_temporal(address, *args, "--output", "json")
    assert code == 0, output
    return json.loads(output) if output.strip() else None


async def test_cli_updates_signals_and_queries_a_session(
    sandbox: Sandbox, address: str, tmp_path
) -> None:
    created = await sandbox.create_session("bash", {"cwd": str(tmp_path)})
    workflow_id = f"{sandbox.sandbox_id}:bash"

    # A signal: fire-and-forget, plain JSON.
    signal_input = {
        "tool": "bash:run",
        "params": {"command": "export FROM_SIGNAL=yes"},
        "request_id": "cli-signal-1",
    }
    await _temporal(
        address,
        "workflow",
        "signal",
        "--workflow-id",
        workflow_id,
        "--name",
        "execute",
        "--input",
        json.dumps(signal_input),
    )

    # An update: the answer is the envelope, as JSON.
    update_input = {
        "tool": "bash:run",
        "params": {"command": "echo $FROM_SIGNAL"},
        "request_id": "cli-update-1",
    }
    answer = await _temporal(
        address,
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        workflow_id,
        "--name",
        "execute",
        "--input",
        json.dumps(update_input),
    )
    envelope = answer["result"]
    assert envelope["code"] == 0
    assert envelope["data"]["stdout"] == "yes\n"
    assert envelope["meta"]["session_id"] == created["session_id"]

    # A bad request through the CLI is rejected by the validator, with the code in the failure.
    bad = {"tool": "bash:run", "params": {}}
    code, output = await _run_temporal(
        address,
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        workflow_id,
        "--name",
        "execute",
        "--input",
        json.dumps(bad),
    )
    assert code != 0
    assert "missing required parameter 'command'" in output

    # A query reads the session's state.
    described = await _temporal(
        address, "workflow", "query", "--workflow-id", workflow_id, "--name", "describe"
    )
    view = described["queryResult"][0]
    assert view["session_id"] == created["session_id"]
    assert view["status"] == "active"
    assert view["call_count"] == 2

    events = await _temporal(
        address,
        "workflow",
        "query",
        "--workflow-id",
        workflow_id,
        "--name",
        "events",
        "--input",
        json.dumps({"kind": "execute"}),
    )
    page = events["queryResult"][0]
    assert [e["request_id"] for e in page["events"]] == ["cli-signal-1", "cli-update-1"]
    assert page["has_more"] is False
