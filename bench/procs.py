"""What a process and everything it started use, from /proc: memory (RSS and PSS, summed over
the tree) and CPU seconds. A worker's tree holds its jails (bwrap, the jail supervisor) and the
shells and interpreters inside them; PSS splits pages shared between processes (the same Python
binary in every interpreter) among them, so the tree's PSS is what it really takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.throughput import _proc_table


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo += children.get(pid, [])
    return found


@dataclass(frozen=True)
class TreeMemory:
    """A process tree's memory in MB, and how many processes it has."""

    rss_mb: float
    pss_mb: float
    processes: int


def _rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) of one process in kB; zeros for one that is gone (or a kernel thread)."""
    rss = pss = 0
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def tree_memory(*roots: int) -> TreeMemory:
    """The summed memory of ``roots`` and all their descendants."""
    pids = {pid for root in roots for pid in descendants(root)}
    rss = pss = 0
    for pid in pids:
        r, p = _rollup(pid)
        rss += r
        pss += p
    return TreeMemory(round(rss / 1024, 1), round(pss / 1024, 1), len(pids))


async def created(sandbox: Any, resource_type: str, **options: Any) -> None:
    """Create a session, raising when it failed: a call on a sandbox with no session would run as
    a temporary one and succeed, hiding the failure."""
    answer = await sandbox.create_session(resource_type, **options)
    if answer.get("status") not in ("success", "exists"):
        raise RuntimeError(f"creating a {resource_type} session failed: {answer}")
