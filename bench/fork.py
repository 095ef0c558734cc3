"""Fork and resume, end to end on the embedded dev server: `.venv/bin/python -m bench.fork`.

- **fork**: a bash session whose workspace is ~200 MB (a virtual environment, a git repository
  and random data: ``bench.workspace``'s recipe) forked into 8; timed from ``Sandbox.fork`` to
  every child having answered its first call (``git log`` in the repository), and split: the
  parent's fork update (its fresh snapshot), the children's starts (each restores the
  workspace), their first calls.
- **resume**: a bash session with ~100 MB and ``idle_suspend_seconds=1``; once it has suspended,
  the time from a call to its answer (``meta.resumed``).

One worker process, the workspace store in a temporary folder. ``--runs N`` (default 3);
``--only fork`` or ``--only resume`` runs one part (the resume right after the fork part, in the
same worker, is slower: see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.server import start_embedded
from bench.workspace import MAKE
from client import Sandbox
from client.workflow_api import SessionWorkflows
from contract import ForkRequest
from runtime.payload_store import data_converter
from tests.processes import WorkerProcess

CHILDREN = 8
FIRST_CALL = "cd /workspace/repo && git log --oneline | wc -l"


async def _made(sb: Sandbox, megabytes: int) -> str:
    """Fill the session's workspace to about ``megabytes``; its size and entries."""
    data = megabytes - 25
    files = data // 10
    command = MAKE.format(
        venv="python3 -m venv venv >/dev/null; ", files=files, chunk=data * 1_000_000 // files
    )
    made = await sb.execute("bash:run", {"command": command, "timeout": 600})
    assert made["code"] == 0 and made["data"]["return_code"] == 0, made
    total, entries = (int(x) for x in made["data"]["stdout"].split())
    return f"{total / 1e6:.0f} MB, {entries} entries"


async def _first_call(child: Sandbox) -> float:
    started = time.perf_counter()
    answer = await child.execute("bash:run", {"command": FIRST_CALL})
    assert answer["code"] == 0 and answer["data"]["stdout"].strip() == "2", answer
    return time.perf_counter() - started


async def _restore_seconds(child: Sandbox) -> float:
    """From the child's start to its instance restored (its log's timestamps)."""
    view = await child.describe_session("bash")
    assert view is not None
    events = (await child.get_events("bash", kind="initialize"))["events"]
    assert "restored" in events[0]["message"], events
    created = _at(view["created_at"])
    return (_at(events[0]["at"]) - created).total_seconds()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def fork_runs(client: Any, runs: int) -> list[dict[str, float]]:
    parent = await Sandbox(f"bench-fork-{uuid.uuid4().hex[:6]}", client=client).start()
    await parent.create_session("bash", ttl=1800)
    print(f"parent workspace: {await _made(parent, 200)}", flush=True)
    rows = []
    try:
        for _ in range(runs):
            workflows = SessionWorkflows(client)
            # The parent's part alone (its fresh snapshot): a fork whose children never start.
            started = time.perf_counter()
            await workflows.fork(
                f"{parent.sandbox_id}:bash",
                ForkRequest(children=[f"bench-none-{uuid.uuid4().hex[:8]}:bash"]),
            )
            parent_part = time.perf_counter() - started
            await parent.execute("bash:run", {"command": "date > /workspace/stamp"})
            started = time.perf_counter()
            children = await parent.fork("bash", n=CHILDREN, ttl=300)
            forked = time.perf_counter() - started
            calls = await asyncio.gather(*(_first_call(c) for c in children))
            total = time.perf_counter() - started
            restores = [await _restore_seconds(c) for c in children]
            rows.append(
                {
                    "total": total,
                    "fork_call": forked,
                    "parent_update": parent_part,
                    "restore_max": max(restores),
                    "first_call_max": max(calls),
                }
            )
            print(_line(rows[-1]), flush=True)
            await asyncio.gather(*(c.destroy_session("bash") for c in children))
    finally:
        await parent.destroy_session("bash")
    return rows


async def resume_runs(client: Any, runs: int) -> list[float]:
    sb = await Sandbox(f"bench-resume-{uuid.uuid4().hex[:6]}", client=client).start()
    await sb.create_session("bash", ttl=1800, idle_suspend_seconds=1)
    print(f"resumed workspace: {await _made(sb, 100)}", flush=True)
    took = []
    try:
        for _ in range(runs):
            await _paused(sb)
            started = time.perf_counter()
            answer = await sb.execute("bash:run", {"command": FIRST_CALL})
            took.append(time.perf_counter() - started)
            assert answer["code"] == 0 and answer["meta"]["resumed"], answer
            print(f"resume to first answer: {took[-1] * 1000:.0f} ms", flush=True)
    finally:
        await sb.destroy_session("bash")
    return took


async def _paused(sb: Sandbox) -> None:
    for _ in range(600):
        if (await sb.describe_session("bash") or {}).get("status") == "paused":
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the session did not suspend")


def _line(row: dict[str, float]) -> str:
    return (
        f"fork 200 MB into {CHILDREN}, all answering: {row['total'] * 1000:.0f} ms "
        f"(Sandbox.fork {row['fork_call'] * 1000:.0f} ms, of which the parent's update "
        f"~{row['parent_update'] * 1000:.0f} ms and the slowest restore "
        f"{row['restore_max'] * 1000:.0f} ms; slowest first call "
        f"{row['first_call_max'] * 1000:.0f} ms)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["fork", "resume"], help="one of the two parts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fork-") as tmp:
        store = Path(tmp) / "workspaces"
        env = await start_embedded(None, data_converter())
        address = env.client.service_client.config.target_host
        worker = await WorkerProcess.start(address, env={"SESSIONS_WORKSPACE_STORE": str(store)})
        os.environ["SESSIONS_WORKSPACE_STORE"] = str(store)
        try:
            forks = await fork_runs(env.client, args.runs) if args.only != "resume" else []
            resumes = await resume_runs(env.client, args.runs) if args.only != "fork" else []
        finally:
            await worker.stop()
            await env.shutdown()
    print()
    if forks:
        total = statistics.median(r["total"] for r in forks) * 1000
        print(f"fork 200 MB into {CHILDREN}, all answering a first call (target 2 s): p50 ", end="")
        print(f"{total:.0f} ms over {len(forks)} runs")
    if resumes:
        print("resume of 100 MB to its first answer (target 1 s): p50 ", end="")
        print(f"{statistics.median(resumes) * 1000:.0f} ms over {len(resumes)} runs")


if __name__ == "__main__":
    asyncio.run(main())
