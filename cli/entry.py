"""The ``durable-sessions`` command's entry point: without the ``[cli]`` extra it says which
extra to install instead of a traceback (the core install has no CLI packages)."""

from __future__ import annotations

import sys

from contract.extras import missing_extra


def main() -> None:
    try:
        from cli.main import main as run
    except ModuleNotFoundError as exc:
        # Every package the command imports up front (click, rich, the HTTP API's) is in [cli].
        missing = missing_extra(exc, "the durable-sessions command", extra="cli")
        if missing is None:
            raise
        sys.exit(f"durable-sessions: {missing}")
    run()
