"""Shared fixtures: one real Temporal dev server and one real worker process per test run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
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
    yield env
    await env.shutdown()


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


def new_sandbox_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def sandbox(client: Client, worker: WorkerProcess) -> AsyncIterator[Sandbox]:
    sb = Sandbox(new_sandbox_id(), client=client)
    await sb.start()
    yield sb
    await sb.shutdown_server()
