"""A call identified by its request id runs at most once on its instance, whatever Temporal
re-delivers: many calls on one session at once, and a server crash during long calls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.client import Client

from client import Sandbox
from http_api.app import Limits, create_app
from http_api.server import HttpService
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.devserver import DevServer
from tests.processes import WorkerProcess


async def test_fifty_concurrent_calls_on_one_session_each_run_once(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    results = await asyncio.gather(
        *(
            sandbox.execute("bash:run", {"command": f"echo line-{i} >> /workspace/log"})
            for i in range(50)
        )
    )
    assert [r["code"] for r in results] == [0] * 50, results
    log = await sandbox.execute("bash:run", {"command": "cat /workspace/log"})
    lines = log["data"]["stdout"].split()
    assert sorted(lines) == sorted(f"line-{i}" for i in range(50)), lines
    await sandbox.destroy_session("bash")


async def test_thirty_concurrent_calls_over_http_each_run_once(
    client: Client, worker: WorkerProcess
) -> None:
    service = HttpService(create_app(client=client, limits=Limits()), "127.0.0.1", 0)
    url = await service.start()
    w = new_sandbox_id("http-once")
    try:
        async with aiohttp.ClientSession(headers=af.headers(w)) as http:

            async def send(call: af.Call) -> dict[str, Any]:
                async with http.request(call.method, url + call.path, json=call.body) as response:
                    answer: dict[str, Any] = await response.json()
                    return answer

            created = await send(af.create_session(w, "bash"))
            assert created["code"] == 0, created
            answers = await asyncio.gather(
                *(
                    send(af.execute(w, "bash:run", {"command": f"echo {i} >> log"}))
                    for i in range(30)
                )
            )
            assert [a["code"] for a in answers] == [0] * 30, answers
            log = await send(af.execute(w, "bash:run", {"command": "cat log"}))
            assert sorted(log["data"]["stdout"].split(), key=int) == [str(i) for i in range(30)]
            await send(af.destroy_session(w, "bash"))
    finally:
        await service.stop()


async def test_calls_in_flight_when_the_server_is_killed_run_once(tmp_path: Path) -> None:
    server = DevServer(tmp_path / "temporal.db")
    client = await server.start()
    worker = await WorkerProcess.start(server.address)
    try:
        sandbox = Sandbox(new_sandbox_id("crash-once"), client=client)
        await sandbox.create_session("bash")

        async def call(i: int) -> dict[str, Any] | None:
            command = f"echo start-{i} >> log; sleep 4; echo end-{i} >> log"
            while True:  # the same request id until a final answer, as a careful client does
                try:
                    return await Sandbox(sandbox.sandbox_id, client=client).execute(
                        "bash:run", {"command": command}, request_id=f"long-{i}"
                    )
                except Exception:
                    await asyncio.sleep(0.5)

        calls = [asyncio.create_task(call(i)) for i in range(3)]
        await asyncio.sleep(1.5)  # every call is running: sleeping inside the sandbox
        assert server.proc is not None
        server.proc.kill()  # kill -9: no goodbye to anyone
        await server.proc.wait()
        client = await server.start()
        answers = await asyncio.wait_for(asyncio.gather(*calls), 120)
        assert all(a is not None and a["code"] == 0 for a in answers), answers
        log = await Sandbox(sandbox.sandbox_id, client=client).execute(
            "bash:run", {"command": "cat log"}
        )
        lines = log["data"]["stdout"].split()
        for i in range(3):
            assert lines.count(f"start-{i}") == 1, lines
            assert lines.count(f"end-{i}") == 1, lines
    finally:
        await worker.stop()
        await server.stop()
