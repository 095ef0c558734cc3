"""A SandboxAgent whose loop is a Temporal workflow and whose sandbox is a durable session.

    .venv/bin/python -m examples.openai_agents_sandbox   # with ./run.sh (or a worker) running

The agent workflow takes one user message per ``ask`` update and runs a ``SandboxAgent`` (the
OpenAI Agents SDK's shell and filesystem capabilities) through the SDK's Temporal integration:
model calls and every sandbox operation are activities. The sandbox client is
``temporal_sandbox_client("durable-sessions")``, served on the agent worker by a
``SandboxClientProvider`` around ``integrations.agents_sandbox.DurableSessionsSandboxClient``.

The workflow names its sandbox (its workflow id), so each turn's run opens the same durable bash
session, and ``keep_on_delete`` leaves it alive between turns (the Runner deletes what it made
at the end of every run); the workflow destroys it when the conversation ends. The example asks
twice and restarts its own agent worker in between: the second command runs where the first
one left the shell. With no ``--model`` a scripted model runs the command after ``run:``.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from agents import Model, ModelProvider, ModelResponse, Runner
    from agents.run import RunConfig
    from agents.sandbox import SandboxAgent, SandboxRunConfig
    from agents.sandbox.capabilities import Filesystem, Shell
    from temporalio.openai_agents import (
        ModelActivityParameters,
        OpenAIAgentsPlugin,
        SandboxClientProvider,
    )
    from temporalio.openai_agents.testing import ResponseBuilders
    from temporalio.openai_agents.workflow import temporal_sandbox_client

    from examples.common import command_in, workflow_runner
    from integrations.agents_sandbox import (
        DurableSessionsSandboxClient,
        DurableSessionsSandboxClientOptions,
    )
    from integrations.calls import SessionOptions, destroy_session

TASK_QUEUE = "agents-openai-sandbox"
PROVIDER = "durable-sessions"
INSTRUCTIONS = "Run what the user asks in the sandbox's shell and report its output."


class SandboxAgentInput(BaseModel):
    #: The session workers' task queue (default ``durable-sessions``).
    sessions_queue: str | None = None
    model: str | None = None


@workflow.defn
class SandboxShellAgent:
    """A conversation with a SandboxAgent whose sandbox is a durable bash session."""

    @workflow.init
    def __init__(self, inp: SandboxAgentInput) -> None:
        self._inp = inp
        self._history: list[Any] = []
        self._done = False
        self._turns = 0

    @workflow.run
    async def run(self, inp: SandboxAgentInput) -> int:
        await workflow.wait_condition(lambda: self._done and workflow.all_handlers_finished())
        # The session activities (SessionToolActivities, on this worker) know the sessions' queue.
        await destroy_session("bash", SessionOptions(sandbox_id=workflow.info().workflow_id))
        return self._turns

    @workflow.update
    async def ask(self, prompt: str) -> str:
        """One user message; answers the agent's reply."""
        options = DurableSessionsSandboxClientOptions(
            sandbox_id=workflow.info().workflow_id,  # every turn: the same durable session
            task_queue=self._inp.sessions_queue,
            keep_on_delete=True,  # the Runner's cleanup leaves it for the next turn
            ttl_seconds=600,
        )
        sandbox = SandboxRunConfig(client=temporal_sandbox_client(PROVIDER), options=options)
        agent = SandboxAgent(
            name="shell",
            instructions=INSTRUCTIONS,
            model=self._inp.model,
            capabilities=[Shell(), Filesystem()],
        )
        turn = [*self._history, {"role": "user", "content": prompt}]
        result = await Runner.run(agent, turn, run_config=RunConfig(sandbox=sandbox))
        self._history = result.to_input_list()
        self._turns += 1
        return str(result.final_output)

    @workflow.signal
    def finish(self) -> None:
        self._done = True


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


class ScriptedShellModel(Model):
    """No network: calls ``exec_command`` with the command after ``run:`` in the user's last
    message, then answers with the tool's output."""

    async def get_response(
        self, system_instructions: str | None, input: Any, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        items: list[Any] = [{"role": "user", "content": input}] if isinstance(input, str) else input
        last = items[-1]
        if _field(last, "type") == "function_call_output":
            return ResponseBuilders.output_message(str(_field(last, "output")))
        content = _field(last, "content")
        command = command_in(content if isinstance(content, str) else "")
        if command is None:
            return ResponseBuilders.output_message("Tell me what to run: 'run: <command>'.")
        calls = sum(1 for item in items if _field(item, "type") == "function_call")
        arguments = json.dumps({"cmd": command})
        return ResponseBuilders.tool_call(arguments, "exec_command", call_id=f"call_{calls + 1}")

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


class ScriptedModelProvider(ModelProvider):
    def get_model(self, model_name: str | None) -> Model:
        return ScriptedShellModel()


def agents_plugin(
    sandbox_client: DurableSessionsSandboxClient, model: str | None = None
) -> OpenAIAgentsPlugin:
    """The SDK's plugin: the scripted model (or OpenAI's ``model``) and our sandbox provider."""
    return OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(start_to_close_timeout=timedelta(seconds=60)),
        model_provider=None if model else ScriptedModelProvider(),
        sandbox_clients=[SandboxClientProvider(PROVIDER, sandbox_client)],
    )


def agent_worker(client: Client, activities: Sequence[Any], task_queue: str = TASK_QUEUE) -> Worker:
    """The agent worker: this workflow, the session activities (its final destroy), and through
    the plugin on ``client`` the model and sandbox activities."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SandboxShellAgent],
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
    if not args.model:
        os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    sandboxes = DurableSessionsSandboxClient(address=args.address, namespace=args.namespace)
    client = await Client.connect(
        **connect_options(args.address, args.namespace),
        plugins=[agents_plugin(sandboxes, args.model)],
    )
    activities = SessionToolActivities(address=args.address, namespace=args.namespace).all()
    workflow_id = f"openai-sandbox-{uuid.uuid4().hex[:8]}"
    async with agent_worker(client, activities):
        handle = await client.start_workflow(
            SandboxShellAgent.run,
            SandboxAgentInput(model=args.model),
            id=workflow_id,
            task_queue=TASK_QUEUE,
        )
        first = "run: mkdir -p /workspace/demo && cd /workspace/demo && export STEP=one"
        print("agent:", await handle.execute_update(SandboxShellAgent.ask, first))
    print("agent worker restarted")
    async with agent_worker(client, activities):
        second = "run: pwd; echo step=$STEP"
        print("agent:", await handle.execute_update(SandboxShellAgent.ask, second))
        await handle.signal(SandboxShellAgent.finish)
        print(f"done: {await handle.result()} turns in session {workflow_id}:bash")


if __name__ == "__main__":
    # Run the module's own copy (not __main__'s), so the worker finds the workflow by its module.
    from examples import openai_agents_sandbox as example
    from examples.common import run

    run(example.main)
