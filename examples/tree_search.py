"""Tree search over a bash task with forked sessions: what an RL or search loop does.

    .venv/bin/python -m examples.tree_search                  # with ./run.sh (or a worker) up
    .venv/bin/python -m examples.tree_search --server-url http://127.0.0.1:8000   # over HTTP

The task: build ``answer.txt`` one line at a time so that ``score.sh`` (which only says how many
lines are right so far) scores highest. At each step the search forks the current session into
four branches, applies a different candidate line in each, scores each branch, keeps the best
and destroys the rest. Each branch starts with the workspace, working directory and exported
variables of the session it was forked from, and is independent of its siblings.

The same code runs straight on Temporal (``Sandbox(client=...)``) and over HTTP
(``Sandbox(server_url=...)``): ``Sandbox.fork`` is ``POST /api/v1/session/fork`` there.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from dataclasses import dataclass, field

from client import Sandbox
from examples.common import run

#: The hidden solution the scorer compares with (a real task: tests, a reward model...).
SOLUTION = ("setup", "build", "test")
#: Four candidate lines per step; the search does not know which one is right.
CANDIDATES = (
    ("clean", "setup", "deploy", "lint"),
    ("build", "lint", "clean", "deploy"),
    ("deploy", "clean", "lint", "test"),
)
BRANCHES = 4
#: The scorer: how many lines of answer.txt match the hidden solution, position by position.
SCORE = """paste -d' ' answer.txt .solution | awk '$1 == $2 { n++ } END { print n + 0 }'
"""


@dataclass
class Step:
    """One level of the tree: each branch's line and score, and the one kept."""

    lines: list[str]
    scores: list[int]
    kept: int


@dataclass
class Result:
    answer: list[str]
    score: int
    steps: list[Step] = field(default_factory=list)


async def _run(sb: Sandbox, command: str) -> str:
    answer = await sb.execute("bash:run", {"command": command})
    if answer["code"] != 0 or answer["data"]["return_code"] != 0:
        raise RuntimeError(f"{command!r} failed: {answer}")
    return str(answer["data"]["stdout"])


async def _try(branch: Sandbox, line: str) -> int:
    """Apply a candidate in a branch (its cwd and $TASK came with the fork) and score it."""
    return int(
        await _run(branch, f'test "$TASK" = ready && echo {line} >> answer.txt && sh score.sh')
    )


async def search(root: Sandbox) -> Result:
    """Greedy tree search from ``root``'s bash session (set up by :func:`prepare`): fork into
    four at each step, keep the best branch, destroy the others. ``root`` is left as it was."""
    current, steps = root, []
    for candidates in CANDIDATES:
        branches = await current.fork("bash", n=BRANCHES, ttl=600)
        scores = list(
            await asyncio.gather(*(_try(b, c) for b, c in zip(branches, candidates, strict=True)))
        )
        kept = max(range(BRANCHES), key=scores.__getitem__)
        losers = [b for i, b in enumerate(branches) if i != kept]
        if current is not root:
            losers.append(current)
        await asyncio.gather(*(b.destroy_session("bash") for b in losers))
        steps.append(Step(list(candidates), scores, kept))
        current = branches[kept]
    answer = (await _run(current, "cat answer.txt")).split()
    score = int(await _run(current, "sh score.sh"))
    await current.destroy_session("bash")
    return Result(answer, score, steps)


async def prepare(root: Sandbox) -> None:
    """The task's starting state in ``root``'s bash session: a directory, files, a variable."""
    await root.create_session("bash")
    await _run(root, "mkdir -p /workspace/task")
    for path, content in (("score.sh", SCORE), (".solution", "\n".join(SOLUTION) + "\n")):
        wrote = await root.execute("bash:write_file", {"path": f"task/{path}", "content": content})
        if wrote["code"] != 0:
            raise RuntimeError(f"writing {path} failed: {wrote}")
    await _run(root, "cd /workspace/task && : > answer.txt && export TASK=ready")


async def main() -> None:
    parser = argparse.ArgumentParser(description="tree search over a bash task, with forks")
    parser.add_argument("--server-url", help="our HTTP API (default: Temporal straight)")
    parser.add_argument("--address", help="Temporal address (default: $TEMPORAL_ADDRESS)")
    args = parser.parse_args()
    sandbox_id = f"tree-{uuid.uuid4().hex[:8]}"
    if args.server_url:
        root = Sandbox(sandbox_id, server_url=args.server_url)
    else:
        root = Sandbox(sandbox_id, address=args.address)
    async with root:
        await prepare(root)
        result = await search(root)
    for depth, step in enumerate(result.steps):
        tried = ", ".join(
            f"{line}={score}" for line, score in zip(step.lines, step.scores, strict=True)
        )
        print(f"step {depth + 1}: {tried} -> kept {step.lines[step.kept]}")
    print(f"answer: {' '.join(result.answer)} (score {result.score}/{len(SOLUTION)})")


if __name__ == "__main__":
    run(main)
