"""The main command's dev server shows sessions in its UI: checked through the UI server's own
HTTP API, as the UI's list and detail pages fetch them."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from client import SessionManager
from runtime.connection import connect
from tests.devserver import DevServer
from tests.processes import WorkerProcess


@pytest.fixture
async def ui_server(tmp_path) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path / "temporal.db")  # the command ./run.sh uses, UI on
    await server.start()  # returns once the UI's HTTP API answers, not only the frontend
    yield server
    await server.stop()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def _decode(payload: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(payload["data"]))


async def test_started_server_ui_answers_at_once(ui_server: DevServer) -> None:
    # No retry here: start() returned only once the UI's API answered (it 503s at first).
    listed = await asyncio.to_thread(_get, f"{ui_server.ui_url}/api/v1/namespaces")
    assert "default" in [ns["namespaceInfo"]["name"] for ns in listed["namespaces"]]


async def test_server_whose_ui_never_answers_fails_clearly_and_stops(tmp_path) -> None:
    server = DevServer(tmp_path / "temporal.db")
    server.command.append("--headless")  # no UI: the wait must end at its deadline
    with pytest.raises(RuntimeError, match=r"/api/v1/namespaces did not answer 200 in time"):
        await server.start(timeout=6)
    assert server.proc is not None and server.proc.returncode is not None


async def test_ui_lists_sessions_filtered_by_owner_state_and_type(ui_server: DevServer) -> None:
    worker = await WorkerProcess.start(ui_server.address)
    try:
        client = await connect(ui_server.address)
        manager = SessionManager(client=client, admin=True)  # an operator: it names no user
        mine = await manager.create_session("ui-alice", "coder", resource_type="bash")
        await manager.create_session("ui-bob", "coder")
        await manager.set_session_state(mine.session_id, "paused")

        base = f"{ui_server.ui_url}/api/v1/namespaces/default/workflows"
        query = "SessionUserId = 'ui-alice' AND SessionState = 'paused' AND ResourceType = 'bash'"
        listed: dict[str, Any] = {}
        for _ in range(40):  # visibility is eventually consistent
            listed = await asyncio.to_thread(
                _get, f"{base}?{urllib.parse.urlencode({'query': query})}"
            )
            if listed.get("executions"):
                break
            await asyncio.sleep(0.25)
        executions = listed["executions"]
        assert [e["execution"]["workflowId"] for e in executions] == [mine.session_id]
        fields = executions[0]["searchAttributes"]["indexedFields"]
        shown = {name: _decode(value) for name, value in fields.items()}
        assert shown["SessionUserId"] == "ui-alice"
        assert shown["SessionAgentId"] == "coder"
        assert shown["SessionState"] == "paused"
        assert shown["ResourceType"] == "bash"

        detail = await asyncio.to_thread(_get, f"{base}/{mine.session_id}")
        summary = _decode(detail["executionConfig"]["userMetadata"]["summary"])
        assert summary == "bash session of ui-alice (coder)"
    finally:
        await worker.stop()
