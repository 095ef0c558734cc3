"""History and database growth per 1,000 calls: sessions calling ``bash:run echo`` beside floor
workflows doing updates with a local activity; the events and bytes their histories gained and
what the dev server's SQLite file (with its write-ahead log) grew by."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench.floor import FloorWorkflow, new_floor
from bench.procs import created
from client import Sandbox
from contract import session_workflow_id

WORKFLOWS = 10


def db_bytes(db_file: Path) -> int:
    """The bytes the database uses, as the server sees it (its write-ahead log included): pages
    in use times the page size, read through a read-only connection. The files' sizes would
    move with the log's checkpoints, not with what was written."""
    with closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


async def _history(handle: WorkflowHandle[Any, Any]) -> tuple[int, int]:
    history = await handle.fetch_history()
    return len(history.events), sum(e.ByteSize() for e in history.events)


async def _measure(
    db_file: Path, handles: list[WorkflowHandle[Any, Any]], calls: int, call: Any
) -> dict[str, Any]:
    before = [await _history(h) for h in handles]
    db_before = db_bytes(db_file)
    each = calls // len(handles)

    async def drive(i: int) -> None:
        for _ in range(each):
            await call(i)

    await asyncio.gather(*(drive(i) for i in range(len(handles))))
    after = [await _history(h) for h in handles]
    done = each * len(handles)
    events = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    history = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    return {
        "calls": done,
        "events_per_1000_calls": round(events * 1000 / done),
        "history_kb_per_1000_calls": round(history * 1000 / done / 1024, 1),
        "db_kb_per_1000_calls": round((db_bytes(db_file) - db_before) * 1000 / done / 1024, 1),
    }


async def growth(client: Client, pinned: str, db_file: Path, calls: int) -> dict[str, Any]:
    boxes = [Sandbox(f"bench-grow-{uuid.uuid4().hex[:8]}", client=client) for _ in range(WORKFLOWS)]
    await asyncio.gather(*(created(sb, "bash") for sb in boxes))
    handles = [
        client.get_workflow_handle(session_workflow_id(sb.sandbox_id, "bash")) for sb in boxes
    ]

    async def ours(i: int) -> None:
        answer = await boxes[i].execute("bash:run", {"command": "echo hi"})
        if answer["code"] != 0:
            raise RuntimeError(answer["message"])

    floors = await asyncio.gather(*(new_floor(client, pinned) for _ in range(WORKFLOWS)))

    async def floor(i: int) -> None:
        await floors[i].execute_update(FloorWorkflow.with_local_activity, "x")

    out: dict[str, Any] = {
        "ours": await _measure(db_file, handles, calls, ours),
        "floor": await _measure(db_file, list(floors), calls, floor),
    }
    await asyncio.gather(*(sb.destroy_session("bash") for sb in boxes))
    await asyncio.gather(*(f.execute_update(FloorWorkflow.finish) for f in floors))
    for key in ("events_per_1000_calls", "history_kb_per_1000_calls", "db_kb_per_1000_calls"):
        f = out["floor"][key]
        out[f"ratio_{key}"] = round(out["ours"][key] / f, 2) if f else None
    return out
