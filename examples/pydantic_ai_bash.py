"""A pydantic-ai agent made durable with Temporal, using a durable bash session.

    .venv/bin/python -m examples.pydantic_ai_bash       # with ./run.sh (or a worker) running

The agent workflow takes one user message per ``ask`` update; its ``bash_run`` tool comes from
``SessionToolset`` and runs the session's ``bash:run`` through the ``execute`` activity. The
example asks twice and restarts its own agent worker in between: the second command runs in the
directory the first one left, in the same session.

The agent's model is a ``FunctionModel`` (no network): it runs the command written after
``run:`` and answers with the tool's result. Swap in any pydantic-ai model to use a real one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from pydantic_ai import Agent
    from pydantic_ai.durable_exec.temporal import (
        PydanticAIPlugin,
        PydanticAIWorkflow,
        TemporalDurability,
    )
    from pydantic_ai.messages import (
        ModelMessage,
        ModelRequest,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from examples.common import INSTRUCTIONS, command_in, workflow_runner
    from integrations.calls import SessionOptions, destroy_session
    from integrations.pydantic_ai_tools import SessionToolset

TASK_QUEUE = "agents-pydantic-ai"


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call ``bash_run`` with the command after ``run:`` in the user's message; once it
    answered, reply with its result."""
    last = messages[-1]
    returns = [p for p in last.parts if isinstance(p, ToolReturnPart)]
    if returns:
        return ModelResponse(parts=[TextPart(json.dumps(returns[-1].content, default=str))])
    prompts = [p for p in last.parts if isinstance(p, UserPromptPart)]
    command = command_in(str(prompts[-1].content)) if prompts else None
    if command is None:
        return ModelResponse(parts=[TextPart("Tell me what to run: 'run: <command>'.")])
    made = sum(
        1
        for m in messages
        if not isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolCallPart)
    )
    return ModelResponse(
        parts=[ToolCallPart("bash_run", {"command": command}, tool_call_id=f"call_{made + 1}")]
    )


#: Built at import, outside any workflow (TemporalDurability registers its activities then).
agent = Agent(
    FunctionModel(scripted),
    name="shell",
    instructions=INSTRUCTIONS,
    toolsets=[SessionToolset(["bash"], only=["bash:run"], id="sessions")],
    capabilities=[TemporalDurability()],
)


@workflow.defn
class PydanticAIShellAgent(PydanticAIWorkflow):
    """A conversation with an agent whose tool is a durable bash session; the session's sandbox
    is the workflow id."""

    __pydantic_ai_agents__ = [agent]

    @workflow.init
    def __init__(self) -> None:
        self._history: list[ModelMessage] = []
        self._lock = asyncio.Lock()
        self._done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self._done and workflow.all_handlers_finished())
        await destroy_session("bash", SessionOptions())
        return sum(
            1
            for m in self._history
            if isinstance(m, ModelResponse)
            for p in m.parts
            if isinstance(p, ToolCallPart)
        )

    @workflow.update
    async def ask(self, prompt: str) -> str:
        """One user message; answers the agent's reply."""
        async with self._lock:
            result = await agent.run(prompt, message_history=self._history)
            self._history = result.all_messages()
            return result.output

    @workflow.signal
    def finish(self) -> None:
        self._done = True


def agent_worker(client: Client, activities: Sequence[Any], task_queue: str = TASK_QUEUE) -> Worker:
    """The agent worker: this workflow, the agent's activities (``client`` carries
    ``PydanticAIPlugin``) and the session activities."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PydanticAIShellAgent],
        activities=list(activities),
        workflow_runner=workflow_runner(),
    )


async def main(argv: Sequence[str] | None = None) -> None:
    from integrations.activities import SessionToolActivities
    from runtime.connection import connect_options

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address")
    parser.add_argument("--namespace")
    args = parser.parse_args(argv)
    client = await Client.connect(
        **connect_options(args.address, args.namespace), plugins=[PydanticAIPlugin()]
    )
    activities = SessionToolActivities(address=args.address, namespace=args.namespace)
    workflow_id = f"pydantic-ai-shell-{uuid.uuid4().hex[:8]}"
    async with agent_worker(client, activities.all()):
        handle = await client.start_workflow(
            PydanticAIShellAgent.run, id=workflow_id, task_queue=TASK_QUEUE
        )
        print(
            "agent:",
            await handle.execute_update(
                PydanticAIShellAgent.ask, "run: mkdir -p /tmp/demo && cd /tmp/demo"
            ),
        )
    print("agent worker restarted")
    async with agent_worker(client, activities.all()):
        print("agent:", await handle.execute_update(PydanticAIShellAgent.ask, "run: pwd"))
        await handle.signal(PydanticAIShellAgent.finish)
        print(f"done: {await handle.result()} tool calls in session {workflow_id}:bash")


if __name__ == "__main__":
    # Run the module's own copy (not __main__'s), so the worker finds the workflow by its module.
    from examples import pydantic_ai_bash as example
    from examples.common import run

    run(example.main)
