"""A workflow in another namespace uses a bash session through the sessions' Nexus service
(examples/nexus_caller.py), on an endpoint created the way ``durable-sessions serve`` creates
its own."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from contract import DEFAULT_TASK_QUEUE, SessionSummary, session_workflow_id
from examples.nexus_caller import CallerInput, NexusShellCaller, caller_worker
from runtime.nexus_endpoint import ensure_namespace, ensure_nexus_endpoint
from tests.processes import WorkerProcess


async def test_caller_in_another_namespace_keeps_one_shell(
    client: Client, worker: WorkerProcess
) -> None:
    endpoint = f"sessions-{uuid.uuid4().hex[:8]}"
    endpoint_id = await ensure_nexus_endpoint(client, name=endpoint, task_queue=DEFAULT_TASK_QUEUE)
    assert await ensure_nexus_endpoint(client, name=endpoint) == endpoint_id  # idempotent
    await ensure_namespace(client, "nexus-callers")
    callers = Client(
        client.service_client, namespace="nexus-callers", data_converter=client.data_converter
    )
    sandbox_id = f"nexus-{uuid.uuid4().hex[:8]}"
    queue = f"callers-{uuid.uuid4().hex[:8]}"
    commands = ["mkdir -p /tmp/nexus-test && cd /tmp/nexus-test", "pwd"]
    async with caller_worker(callers, task_queue=queue):
        results = await callers.execute_workflow(
            NexusShellCaller.run,
            CallerInput(sandbox_id=sandbox_id, commands=commands, endpoint=endpoint),
            id=f"caller-{sandbox_id}",
            task_queue=queue,
        )
    assert [r["code"] for r in results] == [0, 0], results
    assert results[1]["data"]["stdout"].strip() == "/tmp/nexus-test"
    # The session lived in the sessions' namespace, ran both calls once, and was destroyed.
    summary = await client.get_workflow_handle(
        session_workflow_id(sandbox_id, "bash"), result_type=SessionSummary
    ).result()
    assert summary.call_count == 2 and summary.status.value == "closed", summary
