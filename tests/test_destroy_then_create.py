"""A destroy the client gave up on, followed at once by a create, ends with a live session
(issue 25, item 6): the create that meets the closing session waits for the close and starts a
fresh one, never answering ``exists`` for a session that is going away; the next call runs in
it, not in a temporary session. In Python and over HTTP, on a real server and worker."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from temporalio.client import Client

from client import Sandbox
from http_api.app import Limits, create_app
from http_api.keys import KeyStore
from http_api.server import HttpService
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess

#: How long after starting the destroy its caller gives up, per try: the destroy has reached the
#: session (the bash instance takes longer than this to clean up) and is closing it.
GIVE_UP_AFTER = (0.05, 0.1, 0.15, 0.2, 0.3)


async def test_an_abandoned_destroy_then_a_create_ends_with_a_session(
    client: Client, worker: WorkerProcess
) -> None:
    sandbox = Sandbox(new_sandbox_id("recreate"), client=client)
    first = await sandbox.create_session("bash")
    assert first["status"] == "success", first
    before = first["session_id"]
    for delay in GIVE_UP_AFTER:
        destroy = asyncio.create_task(sandbox.destroy_session("bash"))
        await asyncio.sleep(delay)
        destroy.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await destroy
        created = await sandbox.create_session("bash")
        assert created["status"] in ("success", "exists"), created
        view = await sandbox.describe_session("bash")
        assert view is not None, (delay, created)
        assert view["status"] == "active", (delay, created, view)
        if created["status"] == "exists":  # the destroy never reached it: the same session
            assert created["session_id"] == before, (delay, created)
        run = await sandbox.execute("bash:run", {"command": "echo in-session"})
        assert run["code"] == 0 and run["data"]["stdout"] == "in-session\n", run
        assert run["meta"]["temporary_session"] is False, (delay, created, run)
        assert run["meta"]["session_id"] == created["session_id"] == view["session_id"]
        before = created["session_id"]
    await sandbox.destroy_session("bash")


async def test_a_create_waits_for_a_slow_close_and_starts_a_fresh_session(
    client: Client, worker: WorkerProcess
) -> None:
    """testkit's cleanup takes 1 s here: every create meets the session while it closes."""
    sandbox = Sandbox(new_sandbox_id("recreate-slow"), client=client)
    config = {"cleanup_delay": 1.0}
    before = (await sandbox.create_session("testkit", config))["session_id"]
    for delay in GIVE_UP_AFTER:
        destroy = asyncio.create_task(sandbox.destroy_session("testkit"))
        await asyncio.sleep(delay)
        destroy.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await destroy
        created = await sandbox.create_session("testkit", config)
        assert created["status"] == "success" and created["session_id"] != before, created
        run = await sandbox.execute("testkit:pid", {})
        assert run["code"] == 0 and run["meta"]["temporary_session"] is False, (delay, run)
        assert run["meta"]["session_id"] == created["session_id"]
        before = created["session_id"]
    await sandbox.destroy_session("testkit")


async def test_over_http_an_abandoned_destroy_then_a_create_ends_with_a_session(
    client: Client, worker: WorkerProcess
) -> None:
    service = HttpService(
        create_app(client=client, keys=KeyStore(), limits=Limits()), "127.0.0.1", 0
    )
    url = await service.start()
    worker_id = new_sandbox_id("recreate-http")
    headers = af.headers(worker_id)

    async def send(
        http: aiohttp.ClientSession, call: af.Call, timeout: float = 60
    ) -> dict[str, Any]:
        async with http.request(
            call.method,
            url + call.path,
            json=call.body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    try:
        async with aiohttp.ClientSession() as http:
            for resource_type, config, call in (
                ("bash", {}, {"command": "echo hi"}),
                ("testkit", {"cleanup_delay": 1.0}, {}),  # a slow close: always met
            ):
                tool = "bash:run" if resource_type == "bash" else "testkit:pid"
                create = af.create_session(worker_id, resource_type, config)
                assert (await send(http, create))["code"] == 0
                for delay in GIVE_UP_AFTER:
                    with contextlib.suppress(TimeoutError):  # AgentFlow's client gave up
                        destroy = af.destroy_session(worker_id, resource_type)
                        await send(http, destroy, timeout=delay)
                    created = await send(http, create)
                    assert created["code"] == 0, created
                    run = await send(http, af.execute(worker_id, tool, call))
                    assert run["code"] == 0, run
                    assert run["meta"]["temporary_session"] is False, (delay, created, run)
                    assert run["meta"]["session_id"] == created["data"]["session_id"], run
                await send(http, af.destroy_session(worker_id, resource_type))
    finally:
        await service.stop()
