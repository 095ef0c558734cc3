"""examples/tree_search.py (issue 26 item 5) runs as a reader runs it, straight on Temporal and
over our HTTP API: at each step it forks four branches, keeps the best and destroys the rest,
and finds the hidden answer; no branch it made is left running. These are the commands of
docs/fork-and-suspend.md (its HTTP one with this test's server's address)."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from temporalio.client import Client

from http_api.app import create_app
from http_api.keys import KeyStore
from http_api.server import HttpService
from tests.processes import WorkerProcess, run_to_end

EXPECTED = [
    "step 1: clean=0, setup=1, deploy=0, lint=0 -> kept setup",
    "step 2: build=2, lint=1, clean=1, deploy=1 -> kept build",
    "step 3: deploy=2, clean=2, lint=2, test=3 -> kept test",
    "answer: setup build test (score 3/3)",
]


@pytest.mark.parametrize("over", ["temporal", "http"])
async def test_the_tree_search_example_finds_the_answer(
    client: Client, address: str, worker: WorkerProcess, over: str
) -> None:
    service = None
    args = []
    if over == "http":
        service = HttpService(create_app(client=client, keys=KeyStore()), "127.0.0.1", 0)
        args = ["--server-url", await service.start()]
    try:
        env = {**os.environ, "TEMPORAL_ADDRESS": address}
        code, out = await run_to_end(
            sys.executable, "-m", "examples.tree_search", *args, env=env, timeout=180
        )
    finally:
        if service is not None:
            await service.stop()
    assert code == 0, out
    assert out.splitlines()[-4:] == EXPECTED, out
    # Every branch was destroyed: none of the example's sandboxes holds a live session (once
    # visibility, which lags a little, has caught up).
    query = (
        "WorkflowType = 'SessionWorkflow' AND ExecutionStatus = 'Running' "
        "AND SandboxId STARTS_WITH 'tree-'"
    )
    for _ in range(50):
        live = [e.id async for e in client.list_workflows(query)]
        if not live:
            break
        await asyncio.sleep(0.2)
    assert live == [], live
