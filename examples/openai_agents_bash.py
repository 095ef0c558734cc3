"""An OpenAI Agents SDK agent, as a Temporal workflow, using a durable bash session.

    .venv/bin/python -m examples.openai_agents_bash     # with ./run.sh (or a worker) running

The agent workflow takes one user message per ``ask`` update and runs the agent on the whole
conversation; its ``bash_run`` tool is the session's ``bash:run``, called through the
``execute`` activity. The example asks twice and restarts its own agent worker in between: the
second command runs in the directory the first one left, in the same session.

With no ``--model`` the agent uses a scripted model (no network): it runs the command written
after ``run:`` and answers with the tool's result. ``--model gpt-4.1`` uses OpenAI
(``OPENAI_API_KEY``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from agents import Agent, Model, ModelProvider, ModelResponse, Runner
    from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
    from temporalio.openai_agents.testing import ResponseBuilders

    from examples.common import INSTRUCTIONS, command_in, workflow_runner
    from integrations.calls import SessionOptions, destroy_session
    from integrations.openai_tools import session_tools

TASK_QUEUE = "agents-openai"


class ShellAgentInput(BaseModel):
    #: Default: the workflow id (each agent run its own sandbox).
    sandbox_id: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    #: A model name for the worker's model provider (default: the SDK's default model).
    model: str | None = None


@workflow.defn
class OpenAIShellAgent:
    """A conversation with an agent whose tool is a durable bash session."""

    @workflow.init
    def __init__(self, inp: ShellAgentInput) -> None:
        self._options = SessionOptions(sandbox_id=inp.sandbox_id, configs={"bash": inp.config})
        self._agent: Agent[Any] | None = None
        self._history: list[Any] = []
        self._lock = asyncio.Lock()
        self._done = False

    @workflow.run
    async def run(self, inp: ShellAgentInput) -> int:
        tools = await session_tools(["bash"], options=self._options, only=["bash:run"])
        self._agent = Agent(name="shell", instructions=INSTRUCTIONS, tools=tools, model=inp.model)
        await workflow.wait_condition(lambda: self._done and workflow.all_handlers_finished())
        await destroy_session("bash", self._options)
        return sum(1 for item in self._history if _field(item, "type") == "function_call")

    @workflow.update
    async def ask(self, prompt: str) -> str:
        """One user message; answers the agent's reply."""
        await workflow.wait_condition(lambda: self._agent is not None)
        assert self._agent is not None
        async with self._lock:
            turn = [*self._history, {"role": "user", "content": prompt}]
            result = await Runner.run(self._agent, turn)
            self._history = result.to_input_list()
            return str(result.final_output)

    @workflow.signal
    def finish(self) -> None:
        self._done = True


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


class ScriptedModel(Model):
    """A model with no network: it calls ``bash_run`` with the command after ``run:`` in the
    user's last message, then answers with the tool's output."""

    async def get_response(
        self, system_instructions: str | None, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        items: list[Any] = [{"role": "user", "content": input}] if isinstance(input, str) else input
        last = items[-1]
        if _field(last, "type") == "function_call_output":
            return ResponseBuilders.output_message(str(_field(last, "output")))
        command = command_in(_text(_field(last, "content")))
        if command is None:
            return ResponseBuilders.output_message("Tell me what to run: 'run: <command>'.")
        calls = sum(1 for item in items if _field(item, "type") == "function_call")
        return ResponseBuilders.tool_call(
            json.dumps({"command": command}), "bash_run", call_id=f"call_{calls + 1}"
        )

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content or []
    return "".join(str(_field(p, "text") or "") for p in parts)


class ScriptedModelProvider(ModelProvider):
    def get_model(self, model_name: str | None) -> Model:
        return ScriptedModel()


def agents_plugin(model: str | None = None) -> OpenAIAgentsPlugin:
    """The SDK's plugin with the scripted model, or OpenAI's for a named ``model``."""
    params = ModelActivityParameters(start_to_close_timeout=timedelta(seconds=60))
    provider = None if model else ScriptedModelProvider()
    return OpenAIAgentsPlugin(model_params=params, model_provider=provider)


def agent_worker(client: Client, activities: Sequence[Any], task_queue: str = TASK_QUEUE) -> Worker:
    """The agent worker: this workflow and the session activities (``client`` carries the
    OpenAI Agents plugin)."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[OpenAIShellAgent],
        activities=list(activities),
        workflow_runner=workflow_runner(),
    )


async def main(argv: Sequence[str] | None = None) -> None:
    from integrations.activities import SessionToolActivities
    from runtime.connection import connect_options

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address")
    parser.add_argument("--namespace")
    parser.add_argument("--model", help="an OpenAI model (default: the scripted model)")
    args = parser.parse_args(argv)
    if not args.model:  # nothing to export the agent's traces to without an OpenAI key
        os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    client = await Client.connect(
        **connect_options(args.address, args.namespace), plugins=[agents_plugin(args.model)]
    )
    activities = SessionToolActivities(address=args.address, namespace=args.namespace)
    workflow_id = f"openai-shell-{uuid.uuid4().hex[:8]}"
    worker = agent_worker(client, activities.all())
    async with worker:
        handle = await client.start_workflow(
            OpenAIShellAgent.run,
            ShellAgentInput(model=args.model),
            id=workflow_id,
            task_queue=TASK_QUEUE,
        )
        print(
            "agent:",
            await handle.execute_update(
                OpenAIShellAgent.ask, "run: mkdir -p /tmp/demo && cd /tmp/demo"
            ),
        )
    print("agent worker restarted")
    async with agent_worker(client, activities.all()):
        print("agent:", await handle.execute_update(OpenAIShellAgent.ask, "run: pwd"))
        await handle.signal(OpenAIShellAgent.finish)
        print(f"done: {await handle.result()} tool calls in session {workflow_id}:bash")


if __name__ == "__main__":
    # Run the module's own copy (not __main__'s), so the worker finds the workflow by its module.
    from examples import openai_agents_bash as example
    from examples.common import run

    run(example.main)
