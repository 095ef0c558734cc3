"""What the examples share: how an agent worker runs workflows, and a chat-style agent turn."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

#: A scripted model runs the command after ``run:`` in the user's message.
RUN_PREFIX = re.compile(r"^\s*run:\s*(?P<command>.+)$", re.DOTALL)

INSTRUCTIONS = (
    "You operate a persistent bash shell with the bash_run tool. Run what the user asks and "
    "report the tool's answer."
)


def command_in(prompt: str) -> str | None:
    """The command a scripted model runs for this message, or None."""
    found = RUN_PREFIX.match(prompt)
    return found.group("command").strip() if found else None


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox still refuses non-deterministic calls but shares imported modules with the
    worker: the agent (built at import, outside any workflow, as pydantic-ai requires) and the
    frameworks' modules are not imported again for every run."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
    )


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> NoReturn:
    """Run an example, then exit without interpreter finalization, where the SDK's native
    threads can abort a process that has finished its work (temporalio/sdk-python#300), as
    worker.py does."""
    code = 0
    try:
        asyncio.run(main())
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
