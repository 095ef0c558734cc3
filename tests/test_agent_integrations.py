"""Agent workflows (OpenAI Agents SDK, pydantic-ai) use a durable bash session through the
session activities: one session across a restart of both the agent worker and the session
worker, and a retried activity that runs its tool once."""

from __future__ import annotations

import json
import uuid
from types import ModuleType
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client

from contract import Envelope, SessionSummary, session_workflow_id
from examples import openai_agents_bash, pydantic_ai_bash
from integrations.activities import SessionToolActivities, request_id_for_activity
from integrations.calls import ToolCall, sandbox_id_for_workflow, tool_alias
from tests.processes import WorkerProcess


async def _agent_client(address: str, example: ModuleType) -> Client:
    if example is openai_agents_bash:
        return await Client.connect(address, plugins=[openai_agents_bash.agents_plugin()])
    return await Client.connect(address, plugins=[pydantic_ai_bash.PydanticAIPlugin()])


async def _start(client: Client, example: ModuleType, workflow_id: str, queue: str) -> Any:
    if example is openai_agents_bash:
        return await client.start_workflow(
            openai_agents_bash.OpenAIShellAgent.run,
            openai_agents_bash.ShellAgentInput(),
            id=workflow_id,
            task_queue=queue,
        )
    return await client.start_workflow(
        pydantic_ai_bash.PydanticAIShellAgent.run, id=workflow_id, task_queue=queue
    )


@pytest.mark.parametrize(
    "example", [openai_agents_bash, pydantic_ai_bash], ids=["openai", "pydantic_ai"]
)
async def test_agent_keeps_its_shell_across_worker_restarts(
    client: Client, address: str, example: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    sessions_queue = f"sessions-{uuid.uuid4().hex[:8]}"
    agents_queue = f"agents-{uuid.uuid4().hex[:8]}"
    workflow_id = f"agent-{uuid.uuid4().hex[:8]}"
    attempts: list[tuple[str, int, str]] = []

    async def lose_first_answer(call: ToolCall, envelope: Envelope) -> None:
        """The tool ran; the first attempt fails anyway, as if its worker died before replying."""
        info = activity.info()
        attempts.append((info.activity_id, info.attempt, envelope.meta.request_id))
        if len(attempts) == 1:
            raise RuntimeError("answer lost after the tool ran")

    activities = SessionToolActivities(
        client=client, task_queue=sessions_queue, after_call=lose_first_answer
    )
    agent_client = await _agent_client(address, example)
    session_worker = await WorkerProcess.start(address, args=["--task-queue", sessions_queue])
    try:
        async with example.agent_worker(agent_client, activities.all(), task_queue=agents_queue):
            handle = await _start(agent_client, example, workflow_id, agents_queue)
            first = json.loads(
                await handle.execute_update("ask", "run: mkdir -p /tmp/agent && cd /tmp/agent")
            )
        # Restart both workers: the agent workflow replays on a new one, the shell is released
        # with its snapshot and made again on the new session worker.
        assert await session_worker.stop() == 0
        session_worker = await WorkerProcess.start(address, args=["--task-queue", sessions_queue])
        async with example.agent_worker(agent_client, activities.all(), task_queue=agents_queue):
            second = json.loads(await handle.execute_update("ask", "run: pwd"))
            await handle.signal("finish")
            assert await handle.result() == 2
        session = client.get_workflow_handle(
            session_workflow_id(sandbox_id_for_workflow(workflow_id), "bash"),
            result_type=SessionSummary,
        )
        summary: SessionSummary = await session.result()
    finally:
        await session_worker.stop()

    assert first["code"] == 0 and first["data"]["cwd"] == "/tmp/agent", first
    assert second["code"] == 0 and second["data"]["stdout"].strip() == "/tmp/agent", second
    # The first call's activity ran twice with one request id; the session ran the tool once.
    (aid, n1, rid1), (same, n2, rid2), (other, n3, _) = attempts
    assert (aid, n1) == (same, 1) and n2 == 2 and rid1 == rid2 and other != aid and n3 == 1
    assert rid1.startswith(f"{workflow_id}/") and rid1.endswith(f"/{aid}")
    assert summary.call_count == 2 and summary.status.value == "closed", summary


def test_request_id_and_aliases() -> None:
    info: Any = type(
        "Info",
        (),
        {
            "workflow_id": "w" * 300,
            "workflow_run_id": "r",
            "activity_id": "1",
            "activity_run_id": None,
        },
    )()
    long_id = request_id_for_activity(info)
    assert long_id.startswith("act-") and len(long_id) <= 200
    assert long_id == request_id_for_activity(info)
    info.workflow_id = "wf"
    assert request_id_for_activity(info) == "wf/r/1"
    assert tool_alias("bash:run") == "bash_run"
    assert sandbox_id_for_workflow("agent 1/x") != sandbox_id_for_workflow("agent 1/y")
    assert sandbox_id_for_workflow("agent-1") == "agent-1"
