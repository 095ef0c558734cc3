"""Run a script or module as if only the core install were there: every package of an extra
fails to import, as on a machine where ``pip install durable-sessions`` brought none of them.

    python -m tests.without_extras SCRIPT [ARGS...]
    python -m tests.without_extras -m MODULE [ARGS...]
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent

#: The top-level modules of every extra's packages (pyproject.toml), written out here rather
#: than read from contract.extras: the test must not trust the table it checks.
BLOCKED = frozenset(
    {
        "fastapi",
        "starlette",
        "uvicorn",
        "httptools",
        "sse_starlette",
        "mcp",
        "mcp_types",
        "agents",
        "openai",
        "pydantic_ai",
        "pydantic_graph",
        "click",
        "rich",
        "PIL",
        "bm25s",
        "numpy",
    }
)


class BlockExtras(importlib.abc.MetaPathFinder):
    """Refuses every module of :data:`BLOCKED` (and their submodules) before any finder looks."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        return None


def loaded_extras() -> list[str]:
    """Blocked modules that are loaded anyway (none, unless one was imported before the block)."""
    return sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)


def main() -> None:
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    sys.meta_path.insert(0, BlockExtras())
    assert not loaded_extras(), f"loaded before the block: {loaded_extras()}"
    sys.path.insert(0, str(ROOT))
    if args[0] == "-m":
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
