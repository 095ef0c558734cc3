"""A workflow in another namespace that uses a bash session through the sessions' Nexus service.

    .venv/bin/python -m examples.nexus_caller            # with ./run.sh running

It registers the namespace ``nexus-callers`` when it is missing, runs a worker for the caller
workflow there, and runs the workflow: ``create`` a bash session, ``execute`` two commands (the
second sees the first's working directory), ``destroy`` the session. ``./run.sh`` registered the
endpoint ``durable-sessions`` at start; its target is the session workers' task queue in the
sessions' namespace.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from integrations.nexus_service import (
        NEXUS_ENDPOINT,
        SessionRequest,
        SessionsService,
        ToolCall,
    )

CALLER_NAMESPACE = "nexus-callers"
TASK_QUEUE = "nexus-callers"


class CallerInput(BaseModel):
    sandbox_id: str
    commands: list[str]
    endpoint: str = NEXUS_ENDPOINT


@workflow.defn
class NexusShellCaller:
    """Runs commands in one bash session of another namespace; answers each call's result."""

    @workflow.run
    async def run(self, inp: CallerInput) -> list[dict[str, Any]]:
        sessions = workflow.create_nexus_client(service=SessionsService, endpoint=inp.endpoint)
        bash = SessionRequest(sandbox_id=inp.sandbox_id, resource_type="bash")
        await sessions.execute_operation(SessionsService.create, bash)
        results = []
        for command in inp.commands:
            call = ToolCall(sandbox_id=inp.sandbox_id, tool="bash:run", params={"command": command})
            envelope = await sessions.execute_operation(SessionsService.execute, call)
            results.append({"code": envelope.code, "data": envelope.data})
        await sessions.execute_operation(SessionsService.destroy, bash)
        return results


def caller_worker(client: Client, task_queue: str = TASK_QUEUE) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[NexusShellCaller])


async def main(argv: Sequence[str] | None = None) -> None:
    from runtime.connection import connect
    from runtime.nexus_endpoint import ensure_namespace

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address")
    parser.add_argument("--namespace", default=CALLER_NAMESPACE, help="the caller's namespace")
    parser.add_argument("--endpoint", default=NEXUS_ENDPOINT)
    args = parser.parse_args(argv)
    await ensure_namespace(await connect(args.address), args.namespace)
    client = await connect(args.address, args.namespace)
    sandbox_id = f"nexus-demo-{uuid.uuid4().hex[:8]}"
    commands = ["mkdir -p /tmp/nexus && cd /tmp/nexus", "pwd"]
    async with caller_worker(client):
        results = await client.execute_workflow(
            NexusShellCaller.run,
            CallerInput(sandbox_id=sandbox_id, commands=commands, endpoint=args.endpoint),
            id=f"caller-{sandbox_id}",
            task_queue=TASK_QUEUE,
        )
    for command, result in zip(commands, results, strict=True):
        print(f"{args.namespace} -> {command!r}: {result}")


if __name__ == "__main__":
    # Run the module's own copy (not __main__'s), so the worker finds the workflow by its module.
    from examples import nexus_caller as example
    from examples.common import run

    run(example.main)
