"""examples/openai_agents_sandbox.py: a SandboxAgent run in a Temporal workflow through the SDK's
Temporal integration, its sandbox a durable session (our provider behind the plugin's
SandboxClientProvider); both the agent worker and the session worker restart between turns."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from contract import SessionSummary, session_workflow_id
from examples import openai_agents_sandbox as example
from integrations.activities import SessionToolActivities
from integrations.agents_sandbox import DurableSessionsSandboxClient
from tests.processes import WorkerProcess


async def test_sandbox_agent_workflow_keeps_its_shell_across_worker_restarts(
    client: Client, address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    sessions_queue = f"sessions-{uuid.uuid4().hex[:8]}"
    agents_queue = f"agents-{uuid.uuid4().hex[:8]}"
    workflow_id = f"sandbox-agent-{uuid.uuid4().hex[:8]}"
    plugin = example.agents_plugin(DurableSessionsSandboxClient(client=client))
    agent_client = await Client.connect(address, plugins=[plugin])
    activities = SessionToolActivities(client=client, task_queue=sessions_queue).all()
    inp = example.SandboxAgentInput(sessions_queue=sessions_queue)
    session_worker = await WorkerProcess.start(address, args=["--task-queue", sessions_queue])
    try:
        async with example.agent_worker(agent_client, activities, task_queue=agents_queue):
            handle = await agent_client.start_workflow(
                example.SandboxShellAgent.run, inp, id=workflow_id, task_queue=agents_queue
            )
            first = await handle.execute_update(
                example.SandboxShellAgent.ask,
                "run: mkdir -p /workspace/demo && cd demo && export STEP=one && echo made > f",
            )
        # Both workers restart: the agent workflow replays on a new agent worker (whose sandbox
        # provider resumes from the state in history); the shell is released with its snapshot
        # and made again on the new session worker.
        assert await session_worker.stop() == 0
        session_worker = await WorkerProcess.start(address, args=["--task-queue", sessions_queue])
        async with example.agent_worker(agent_client, activities, task_queue=agents_queue):
            second = await handle.execute_update(
                example.SandboxShellAgent.ask, "run: pwd; echo step=$STEP; cat f"
            )
            await handle.signal(example.SandboxShellAgent.finish)
            assert await handle.result() == 2
        session = client.get_workflow_handle(
            session_workflow_id(workflow_id, "bash"), result_type=SessionSummary
        )
        summary: SessionSummary = await session.result()
    finally:
        await session_worker.stop()

    assert "exited with code 0" in first, first
    assert "/workspace/demo\nstep=one\nmade\n" in second, second
    # One durable session for the whole conversation, destroyed by the workflow at its end.
    assert summary.status.value == "closed" and summary.call_count >= 2, summary
