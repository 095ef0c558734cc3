"""Client restarts and a chaos run: every request has exactly one final answer."""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from pathlib import Path

from temporalio.client import Client

from client import Sandbox
from tests.conftest import new_sandbox_id
from tests.envelopes import untraced
from tests.processes import ROOT, WorkerProcess

FINAL = {0, 5014}  # success, or "resource lost" for a call that must not be repeated


async def test_call_in_flight_when_the_client_died_is_answered_once_on_retry(
    client: Client, worker: WorkerProcess, address: str, tmp_path: Path
) -> None:
    sandbox = Sandbox(new_sandbox_id(), client=client)
    await sandbox.create_session("bash", {"cwd": str(tmp_path)})
    command = "sleep 2; echo ran >> ran.txt; echo done"
    script = (
        "import asyncio\n"
        "from client import Sandbox\n"
        "async def main():\n"
        f"    sb = Sandbox({sandbox.sandbox_id!r}, {address!r})\n"
        "    await sb.start()\n"
        "    print('sending', flush=True)\n"
        f"    await sb.execute('bash:run', {{'command': {command!r}}}, request_id='inflight-1')\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).startswith(b"sending")
    await asyncio.sleep(0.7)
    proc.kill()  # the client dies while its call runs
    await proc.wait()

    # A new client retries with the same request_id: it gets the answer, the command ran once.
    answer = await Sandbox(sandbox.sandbox_id, client=client).execute(
        "bash:run", {"command": command}, request_id="inflight-1"
    )
    assert answer["code"] == 0 and answer["data"]["stdout"] == "done\n"
    # The file lies in the session's own sandbox: read it there.
    ran = await Sandbox(sandbox.sandbox_id, client=client).execute(
        "bash:run", {"command": "cat ran.txt"}
    )
    assert ran["data"]["stdout"] == "ran\n", ran
    await sandbox.destroy_session("bash")


async def test_chaos_every_request_has_one_final_answer(
    client: Client, address: str, tmp_path: Path
) -> None:
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    workers = [await WorkerProcess.start(address, args=["--task-queue", queue]) for _ in range(2)]
    sandboxes = [
        Sandbox(new_sandbox_id("chaos"), client=client, task_queue=queue) for _ in range(3)
    ]
    for sb in sandboxes:
        await sb.create_session("testkit")
    answers: dict[str, dict] = {}
    attempts = 0

    async def call(sb: Sandbox, request_id: str) -> None:
        nonlocal attempts
        path = str(tmp_path / request_id)
        while True:  # a client that retries until it has a final answer, same request_id
            attempts += 1
            try:
                result = await sb.execute("testkit:count", {"path": path}, request_id=request_id)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            if result["code"] in FINAL:
                answers[request_id] = result
                return
            await asyncio.sleep(0.2)

    async def stream(sb: Sandbox, n: int) -> None:
        for i in range(n):
            await call(sb, f"{sb.sandbox_id}-{i}")

    async def chaos() -> int:
        kills = 0
        for _ in range(2):
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            victim = workers.pop(rng.randrange(len(workers)))
            await victim.kill()
            kills += 1
            workers.append(await WorkerProcess.start(address, args=["--task-queue", queue]))
        return kills

    try:
        per_session = 40
        kills, *_ = await asyncio.wait_for(
            asyncio.gather(chaos(), *(stream(sb, per_session) for sb in sandboxes)), 150
        )
        requests = [f"{sb.sandbox_id}-{i}" for sb in sandboxes for i in range(per_session)]
        assert set(answers) == set(requests)
        ran = {r: _lines(tmp_path / r) for r in requests}
        assert all(n <= 1 for n in ran.values()), "a non-repeatable tool ran twice"
        assert all(ran[r] == 1 for r, a in answers.items() if a["code"] == 0)
        # Asked again, every request gives the same single answer.
        for sb in sandboxes:
            for i in (0, per_session - 1):
                rid = f"{sb.sandbox_id}-{i}"
                again = await sb.execute(
                    "testkit:count", {"path": str(tmp_path / rid)}, request_id=rid
                )
                # The same answer; only the trace of this asking differs.
                assert untraced(again) == untraced(answers[rid])
        lost = sum(1 for a in answers.values() if a["code"] == 5014)
        print(
            f"chaos: {len(requests)} requests, {attempts} attempts, {kills} workers killed, "
            f"{len(requests) - lost} succeeded, {lost} answered 'resource lost', "
            f"{sum(ran.values())} tool runs, 0 duplicates"
        )
    finally:
        for w in workers:
            await w.stop()


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0
