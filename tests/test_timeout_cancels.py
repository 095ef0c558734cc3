"""A call that runs past its timeout is cancelled, with the processes it started, so the next
call on its session starts at once (issue 25, item 5): AgentFlow's behaviour, which cancels a
tool at its timeout. Real server and worker; the plugin tools are tests/plugin_pkg's testkit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.client import Client

from client import Sandbox
from contract import ErrorCode
from http_api.app import Limits, create_app
from http_api.keys import KeyStore
from http_api.server import HttpService
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has ended


async def test_a_plugin_tool_past_its_timeout_is_cancelled_and_the_next_call_starts_at_once(
    client: Client, worker: WorkerProcess
) -> None:
    async with Sandbox(new_sandbox_id("cancel"), client=client) as sandbox:
        await sandbox.create_session("testkit")
        for _ in range(2):
            started = time.perf_counter()
            stopped = await sandbox.execute("testkit:sleep", {"seconds": 4}, timeout=1)
            took = time.perf_counter() - started
            assert stopped["code"] == ErrorCode.TIMEOUT, stopped
            assert "cancelled" in stopped["message"] and stopped["data"]["cancelled"] is True
            assert took < 2.5, took
            # The session's next call does not wait for the cancelled one.
            started = time.perf_counter()
            after = await sandbox.execute("testkit:pid", {})
            assert after["code"] == 0, after
            assert after["meta"]["session_id"] == stopped["meta"]["session_id"]
            assert time.perf_counter() - started < 0.5, time.perf_counter() - started
        # The timeout is every call's parameter: strict checking does not call it undeclared.
        strict = await sandbox.execute(
            "testkit:sleep", {"seconds": 4}, timeout=1, strict_params=True
        )
        assert strict["code"] == ErrorCode.TIMEOUT and strict["data"]["cancelled"], strict
        assert strict["meta"]["ignored_params"] == [], strict
        # Without a timeout the call runs to its end (the default bound is 300 s).
        slept = await sandbox.execute("testkit:sleep", {"seconds": 1.2})
        assert slept["code"] == 0 and slept["data"]["slept"] == 1.2, slept


async def test_the_processes_a_cancelled_call_started_are_killed(
    client: Client, worker: WorkerProcess, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    async with Sandbox(new_sandbox_id("cancel"), client=client) as sandbox:
        await sandbox.create_session("testkit")
        stopped = await sandbox.execute("testkit:spawn", {"path": str(pids)}, timeout=1)
        assert stopped["code"] == ErrorCode.TIMEOUT and stopped["data"]["cancelled"], stopped
        shell, sleeper = (int(p) for p in pids.read_text().split())
        assert stopped["data"]["killed_processes"] == 2, stopped
        assert not _running(shell) and not _running(sleeper)
        # A call that ends in time is not touched.
        quick = await sandbox.execute("testkit:sleep", {"seconds": 0.1}, timeout=5)
        assert quick["code"] == 0 and quick["data"]["slept"] == 0.1, quick


async def test_over_http_the_timeout_cancels_too(client: Client, worker: WorkerProcess) -> None:
    service = HttpService(
        create_app(client=client, keys=KeyStore(), limits=Limits()), "127.0.0.1", 0
    )
    url = await service.start()
    worker_id = new_sandbox_id("cancel-http")

    async def send(http: aiohttp.ClientSession, call: af.Call) -> tuple[int, dict[str, Any]]:
        async with http.request(
            call.method, url + call.path, json=call.body, headers=af.headers(worker_id)
        ) as response:
            return response.status, await response.json()

    try:
        async with aiohttp.ClientSession() as http:
            status, _ = await send(http, af.create_session(worker_id, "testkit"))
            assert status == 200
            started = time.perf_counter()
            _, stopped = await send(http, af.execute(worker_id, "testkit:sleep", {"seconds": 4}, 1))
            assert stopped["code"] == ErrorCode.TIMEOUT and stopped["data"]["cancelled"], stopped
            assert time.perf_counter() - started < 2.5
            started = time.perf_counter()
            _, after = await send(http, af.execute(worker_id, "testkit:pid"))
            assert after["code"] == 0, after
            assert time.perf_counter() - started < 0.5
            await send(http, af.destroy_session(worker_id, "testkit"))
    finally:
        await service.stop()
