"""Throughput: many sessions calling at once, beside floor workflows doing as many updates, and
the CPU each process spent per call."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client

from backends.bash import BashBackend
from bench.floor import FloorWorkflow, new_floor
from bench.measure import stats
from client import Sandbox

ECHO = "echo hi"

THROUGHPUT_KINDS = (
    "floor: no-op update",
    "floor: update + local activity",
    "ours: bash:run echo",
    "direct: BashBackend.run in-process",
)

#: Session ``i``'s part of a round: (failed calls, latency of each call in ms).
Drive = Callable[[int], Awaitable[tuple[int, list[float]]]]


def _drive(calls: int, call: Callable[[int], Awaitable[bool]]) -> Drive:
    """Session ``i`` makes ``calls`` calls one after another (``call`` answers whether the call
    succeeded), each one timed."""

    async def drive(i: int) -> tuple[int, list[float]]:
        latencies: list[float] = []
        bad = 0
        for _ in range(calls):
            started = time.perf_counter()
            bad += not await call(i)
            latencies.append((time.perf_counter() - started) * 1000)
        return bad, latencies

    return drive


async def throughput(
    client: Client, pinned: str, quick: bool, pids: dict[str, int]
) -> dict[str, Any]:
    """Ours beside floor workflows doing the same number of updates (no-op, and update + local
    activity) and the direct tool, rounds interleaved, median round kept. Beside each round the
    CPU each process (with its children: the sessions' shells) spent per call."""
    sessions, calls = (10, 5) if quick else (50, 20)
    rounds = 1 if quick else 3
    boxes = [Sandbox(f"bench-{uuid.uuid4().hex[:8]}", client=client) for _ in range(sessions)]
    await asyncio.gather(*(sb.create_session("bash") for sb in boxes))
    floors = await asyncio.gather(*(new_floor(client, pinned) for _ in range(sessions)))
    backend = BashBackend()
    shells = await asyncio.gather(*(backend.initialize("bench", {}) for _ in range(sessions)))

    def floor(update: Any) -> Drive:
        async def call(i: int) -> bool:
            await floors[i].execute_update(update, "x")
            return True

        return _drive(calls, call)

    async def ours(i: int) -> bool:
        return (await boxes[i].execute("bash:run", {"command": ECHO}))["code"] == 0

    async def direct(i: int) -> bool:
        await backend.run(ECHO, session_info=shells[i])
        return True

    drives = (
        floor(FloorWorkflow.noop),
        floor(FloorWorkflow.with_local_activity),
        _drive(calls, ours),
        _drive(calls, direct),
    )
    kinds = dict(zip(THROUGHPUT_KINDS, drives, strict=True))
    measured: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    names = list(kinds)
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            measured[name].append(await _round(kinds[name], sessions, calls, pids))
    await asyncio.gather(*(sb.destroy_session("bash") for sb in boxes))
    await asyncio.gather(*(backend.cleanup("bench", info) for info in shells))
    await asyncio.gather(*(f.execute_update(FloorWorkflow.finish) for f in floors))
    out: dict[str, Any] = {"sessions": sessions, "calls_each": calls, "rounds": rounds}
    for name, runs in measured.items():
        best = sorted(runs, key=lambda x: x["calls_per_second"])[len(runs) // 2]
        out[name] = {**best, "errors": sum(x["errors"] for x in runs), "rounds": runs}
    ours_rate = out["ours: bash:run echo"]["calls_per_second"]
    la_rate = out["floor: update + local activity"]["calls_per_second"]
    out["ratio"] = round(ours_rate / la_rate, 2)
    out["target"] = 0.8
    out["met"] = out["ratio"] >= 0.8 and out["ours: bash:run echo"]["errors"] == 0
    return out


async def _round(drive: Drive, sessions: int, calls: int, pids: dict[str, int]) -> dict[str, Any]:
    """Every session drives at once; calls per second, latencies and CPU per call."""

    async def guarded(i: int) -> tuple[int, list[float]]:
        try:
            return await drive(i)
        except Exception:
            return calls, []

    cpu_before = _cpu(pids)
    started = time.perf_counter()
    per = await asyncio.gather(*(guarded(i) for i in range(sessions)))
    elapsed = time.perf_counter() - started
    cpu_after = _cpu(pids)
    done = sessions * calls
    latencies = [x for _, lat in per for x in lat]
    return {
        "calls_per_second": round(done / elapsed, 1),
        "errors": sum(b for b, _ in per),
        "wall_ms": round(elapsed * 1000, 1),
        **(stats(latencies) if latencies else {}),
        "cpu_ms_per_call": {
            who: round((cpu_after[who] - cpu_before[who]) * 1000 / done, 2) for who in cpu_before
        },
    }


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, name, CPU seconds used so far)."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / tick)
    return table


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process and its live descendants; ``server`` is the dev
    server (a child of this process), ``client`` this process and the rest of its descendants
    (the direct floor's shells)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)

    def tree(root: int) -> float:
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][2]
            todo += children.get(pid, [])
        return total

    me = os.getpid()
    out = {name: tree(pid) for name, pid in pids.items()}
    out["server"] = sum(
        tree(pid) for pid in children.get(me, []) if table[pid][1].startswith("temporal")
    )
    out["client"] = tree(me) - out["server"] - sum(out[name] for name in pids)
    return out
