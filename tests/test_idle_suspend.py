"""Idle suspend and transparent resume (issue 26 item 3) on the real server and workers: the
E2B#884 loop (write, suspend, resume, write... five times) keeps every file with its content,
also when the worker that ran the session is SIGKILLed while it is paused; the deadline keeps
its own rule; ``auto_resume=False`` answers 4007 and leaves the session paused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from temporalio.client import Client

from client import Sandbox, SessionManager
from http_api.app import create_app
from http_api.keys import KeyStore
from http_api.server import HttpService
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess, start_on

#: Short idle times keep the test short; the wait for "paused" has a generous margin.
SUSPEND_AFTER = 1.0
PAUSED_WITHIN = 20.0
ROUNDS = 5


async def _wait_for_status(sb: Sandbox, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + PAUSED_WITHIN
    while True:
        view = await sb.describe_session("bash")
        assert view is not None
        if view["status"] == status:
            return view
        assert time.monotonic() < deadline, view
        await asyncio.sleep(0.2)


async def _write_suspend_resume_loop(
    sb: Sandbox, between: Any = None, *, before: Any = None, rounds: int = ROUNDS
) -> None:
    """Each round writes a file, waits for the suspend, then the next call resumes the
    session and finds every file written so far with its content. ``before`` runs while the
    session goes idle, ``between`` once it is paused."""
    for i in range(rounds):
        # Absolute paths: the working directory comes back too (the listing's cd).
        command = f"mkdir -p /workspace/n && echo content-{i} > /workspace/n/f{i}"
        wrote = await sb.execute("bash:run", {"command": command})
        assert wrote["code"] == 0, wrote
        view = await sb.describe_session("bash")
        assert view is not None
        if before is not None:
            await before()
        paused = await _wait_for_status(sb, "paused")
        assert paused["suspended"] and paused["session_id"] is None, paused
        assert paused["deadline"] == view["deadline"]  # suspending moves no deadline
        if between is not None:
            await between()
        answer = await sb.execute(
            "bash:run", {"command": "cd /workspace/n && for f in f*; do echo $f $(cat $f); done"}
        )
        assert answer["code"] == 0, answer
        assert answer["meta"]["resumed"] is True, answer
        expected = [f"f{j} content-{j}" for j in range(i + 1)]
        assert answer["data"]["stdout"].splitlines() == expected, answer
        after = await sb.execute("bash:run", {"command": "pwd"})
        assert after["meta"]["resumed"] is False  # only the call that resumed says so


async def test_every_write_survives_five_suspends(client: Client, worker: WorkerProcess) -> None:
    sb = await Sandbox(new_sandbox_id("susp"), client=client).start()
    await sb.create_session("bash", idle_suspend_seconds=SUSPEND_AFTER)
    try:
        await _write_suspend_resume_loop(sb)
        kinds = [e["kind"] for e in (await sb.get_events("bash", limit=100))["events"]]
        assert kinds.count("suspend") == ROUNDS and kinds.count("resume") == ROUNDS, kinds
    finally:
        await sb.destroy_session("bash")


async def test_every_write_survives_suspends_with_the_worker_killed_while_paused(
    client: Client, address: str, queue: str, workers: list[WorkerProcess]
) -> None:
    holder = await start_on(address, queue, workers)
    sb = await Sandbox(new_sandbox_id("susp-kill"), client=client, task_queue=queue).start()
    await sb.create_session("bash", idle_suspend_seconds=SUSPEND_AFTER)
    current = [holder]
    successors: list[asyncio.Task[WorkerProcess]] = []

    async def start_a_successor() -> None:  # while the session goes idle
        successors.append(asyncio.create_task(start_on(address, queue, workers)))

    async def kill_the_worker() -> None:
        successor = await successors.pop()
        await current[0].kill()
        current[0] = successor

    try:
        await _write_suspend_resume_loop(sb, kill_the_worker, before=start_a_successor)
    finally:
        await sb.destroy_session("bash")


async def test_auto_resume_false_answers_4007_and_the_session_stays_paused(
    client: Client, worker: WorkerProcess
) -> None:
    manager = SessionManager(client=client, user_id="sleeper")
    record = await manager.create_session(
        "sleeper",
        "a",
        resource_type="bash",
        idle_suspend_seconds=SUSPEND_AFTER,
        auto_resume=False,
    )
    sid = record.session_id
    try:
        assert (await manager.execute(sid, "bash:run", {"command": "echo x > x"}))["code"] == 0
        deadline = time.monotonic() + PAUSED_WITHIN
        while (await manager.get_session_state(sid)).value != "paused":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        refused = await manager.execute(sid, "bash:run", {"command": "cat x"})
        assert refused["code"] == 4007 and "auto_resume" in refused["message"], refused
        assert (await manager.get_session_state(sid)).value == "paused"
        # The call's own choice wins over the session's.
        answer = await manager.execute(sid, "bash:run", {"command": "cat x"}, auto_resume=True)
        assert answer["code"] == 0 and answer["data"]["stdout"] == "x\n", answer
        assert answer["meta"]["resumed"] is True
    finally:
        await manager.delete_session(sid)


async def test_a_running_background_process_keeps_the_session_from_suspending(
    client: Client, worker: WorkerProcess
) -> None:
    sb = await Sandbox(new_sandbox_id("susp-bg"), client=client).start()
    await sb.create_session("bash", idle_suspend_seconds=SUSPEND_AFTER)
    try:
        started = await sb.execute("bash:start", {"command": "sleep 600"})
        assert started["code"] == 0, started
        await asyncio.sleep(SUSPEND_AFTER * 3)
        view = await sb.describe_session("bash")
        assert view is not None and view["status"] == "active", view
        events = (await sb.get_events("bash", kind="suspend"))["events"]
        assert events and "background" in events[0]["message"], events
        killed = await sb.execute("bash:kill", {"handle": started["data"]["handle"]})
        assert killed["code"] == 0, killed
        await _wait_for_status(sb, "paused")  # once it has ended, the session suspends
    finally:
        await sb.destroy_session("bash")


async def test_auto_resume_per_call_through_the_client_and_over_http(
    client: Client, worker: WorkerProcess
) -> None:
    service = HttpService(create_app(client=client, keys=KeyStore()), "127.0.0.1", 0)
    url = await service.start()
    direct = await Sandbox(new_sandbox_id("susp-call"), client=client).start()
    over_http = await Sandbox(new_sandbox_id("susp-http"), server_url=url).start()
    try:
        for sb in (direct, over_http):
            await sb.create_session("bash", idle_suspend_seconds=SUSPEND_AFTER)
            assert (await sb.execute("bash:run", {"command": "echo y > y"}))["code"] == 0
            await _wait_for_status(sb, "paused")
            refused = await sb.execute("bash:run", {"command": "cat y"}, auto_resume=False)
            assert refused["code"] == 4007 and "suspended" in refused["message"], refused
            # A streaming call is refused the same way (its envelope, no output).
            stream = sb.execute_stream("bash:run", {"command": "cat y"}, auto_resume=False)
            items = [i async for i in stream]
            assert len(items) == 1 and isinstance(items[0], dict), items
            assert items[0]["code"] == 4007, items
            body = {"worker_id": sb.sandbox_id, "action": "bash:run", "auto_resume": False,
                    "params": {"command": "cat y"}}  # fmt: skip
            async with aiohttp.ClientSession() as http:  # noqa: SIM117
                async with http.post(url + "/api/v1/execute/stream", json=body) as response:
                    text = await response.text()
            assert text.startswith("event: result\n") and '"code":4007' in text, text
            answer = await sb.execute("bash:run", {"command": "cat y"})
            assert answer["code"] == 0 and answer["meta"]["resumed"] is True, answer
            assert answer["data"]["stdout"] == "y\n"
            await sb.destroy_session("bash")
    finally:
        await over_http.close()
        await service.stop()
