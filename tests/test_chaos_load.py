"""Chaos under load: 20 sessions x 20 calls while a worker and then the server are killed.

Every call leaves one line in its session's workspace. A careful caller sends a call again with
the same request id until it has a final answer, and a call answered "resource lost" (5014) again
under a new id. At the end each session's file must hold exactly the calls that answered success,
each once: nothing a caller was told is lost, nothing ran twice.
"""

from __future__ import annotations

import asyncio
import collections
import random
from pathlib import Path

from temporalio.client import Client

from client import Sandbox
from tests.conftest import new_sandbox_id
from tests.devserver import DevServer
from tests.processes import WorkerProcess

SESSIONS = 20
CALLS = 20


async def test_killed_worker_and_server_under_load_lose_nothing_and_repeat_nothing(
    tmp_path: Path,
) -> None:
    server = DevServer(tmp_path / "temporal.db")
    current: list[Client] = [await server.start()]
    queue = "chaos-load"
    workers = [await WorkerProcess.start(server.address, args=["--task-queue", queue])]
    rng = random.Random(23)
    try:
        sandbox_ids = [new_sandbox_id("load") for _ in range(SESSIONS)]
        for sid in sandbox_ids:  # half on each worker: the second starts midway
            if sid == sandbox_ids[SESSIONS // 2]:
                workers.append(
                    await WorkerProcess.start(server.address, args=["--task-queue", queue])
                )
            created = await Sandbox(sid, client=current[0], task_queue=queue).create_session("bash")
            assert created["session_id"], created
        succeeded: dict[str, list[str]] = {sid: [] for sid in sandbox_ids}
        lost = retries = 0
        done_at: dict[str, int] = {}  # calls answered when each fault struck

        async def call(sid: str, request_id: str) -> int:
            nonlocal retries
            command = f"sleep 0.{rng.randrange(1, 4)}; echo {request_id} >> effects"
            while True:
                try:
                    sandbox = Sandbox(sid, client=current[0], task_queue=queue)
                    answer = await sandbox.execute(
                        "bash:run", {"command": command}, request_id=request_id
                    )
                except Exception:  # the server is down: same request id, again
                    retries += 1
                    await asyncio.sleep(0.5)
                    continue
                if answer["code"] in (0, 5014):
                    return int(answer["code"])
                retries += 1
                await asyncio.sleep(0.5)

        async def session(sid: str) -> None:
            nonlocal lost
            for i in range(CALLS):
                request_id = f"{sid}-{i}"
                while await call(sid, request_id) == 5014:  # lost with its worker: a new id
                    lost += 1
                    request_id += "-again"
                succeeded[sid].append(request_id)

        async def chaos() -> None:
            await asyncio.sleep(2)
            victim = workers.pop(0)
            done_at["worker"] = sum(map(len, succeeded.values()))
            await victim.kill()  # SIGKILL of the worker holding half the sessions
            workers.append(await WorkerProcess.start(server.address, args=["--task-queue", queue]))
            await asyncio.sleep(2)
            assert server.proc is not None
            done_at["server"] = sum(map(len, succeeded.values()))
            server.proc.kill()  # kill -9 of the server, restarted on the same database
            await server.proc.wait()
            await asyncio.sleep(1)
            current[0] = await server.start()

        await asyncio.wait_for(
            asyncio.gather(chaos(), *(session(sid) for sid in sandbox_ids)), timeout=240
        )
        # Both faults struck mid-load, with calls on every side of them.
        assert 0 < done_at["worker"] < done_at["server"] < SESSIONS * CALLS, done_at
        twice, missing = [], []
        for sid in sandbox_ids:
            sandbox = Sandbox(sid, client=current[0], task_queue=queue)
            read = await sandbox.execute("bash:run", {"command": "cat effects"})
            assert read["code"] == 0, read
            ran = collections.Counter(read["data"]["stdout"].split())
            twice += [r for r, n in ran.items() if n > 1]
            missing += [r for r in succeeded[sid] if ran[r] == 0]
            assert set(ran) <= set(succeeded[sid]) | {
                f"{sid}-{i}" + "-again" * k for i in range(CALLS) for k in range(4)
            }
            await sandbox.destroy_session("bash")
        print(
            f"chaos under load: {SESSIONS * CALLS} calls, faults after {done_at}, "
            f"{lost} answered 'resource lost' and "
            f"were sent again, {retries} retries while the server was down, "
            f"{len(twice)} ran twice, {len(missing)} successes missing"
        )
        assert not twice, f"ran twice: {twice}"
        assert not missing, f"answered success but left no effect: {missing}"
    finally:
        for w in workers:
            await w.stop()
        await server.stop()
