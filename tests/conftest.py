"""Shared fixtures: one real Temporal dev server and one real worker process per test run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from client import Sandbox
from contract import SEARCH_ATTRIBUTES
from runtime.embedded import dynamic_config_args, temporal_binary
from runtime.payload_store import data_converter
from tests.processes import WorkerProcess


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(),
        dev_server_log_level="error",
        dev_server_extra_args=dynamic_config_args(),  # the settings ./run.sh's server has
    )
    try:
        yield env
        await _assert_no_task_failure_loops(env.client)
    finally:
        await env.shutdown()


async def _assert_no_task_failure_loops(client: Client) -> None:
    """After the whole run: no workflow on the shared server failed a workflow task twice (a bad
    input must be refused, never retried by the server in a loop)."""
    looping = []
    async for execution in client.list_workflows():
        history = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        failed = sum(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events
        )
        if failed > 1:
            looping.append(f"{execution.id} ({failed} failed workflow tasks)")
    assert not looping, f"workflow tasks failed repeatedly: {looping}"


@pytest.fixture(scope="session")
def client(dev_server: WorkflowEnvironment) -> Client:
    return dev_server.client


@pytest.fixture(scope="session")
def address(client: Client) -> str:
    return client.service_client.config.target_host


@pytest.fixture(scope="session")
async def worker(address: str) -> AsyncIterator[WorkerProcess]:
    proc = await WorkerProcess.start(address)
    yield proc
    await proc.stop()


@pytest.fixture
def queue() -> str:
    """A task queue of the test's own: its workers are the only ones a session there meets."""
    return f"q-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def workers() -> AsyncIterator[list[WorkerProcess]]:
    """Workers a test starts on its queue (``start_on``); stopped, or reaped, at the end."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        await w.stop()


def new_sandbox_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def sandbox(client: Client, worker: WorkerProcess) -> AsyncIterator[Sandbox]:
    sb = Sandbox(new_sandbox_id(), client=client)
    await sb.start()
    yield sb
    await sb.shutdown_server()
