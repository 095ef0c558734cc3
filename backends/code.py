"""The ``code`` backend: a persistent Python interpreter per session."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

from pydantic import Field

from backends.base import Backend, tool
from backends.interpreter import Interpreter
from backends.jail import JailedProcess
from backends.jail_settings import jail_python
from backends.process_config import process_config
from backends.workspace import Workspace, WorkspaceTools, changed_snapshot
from contract import ErrorCode, ToolOutcome

LANGUAGES = ("python",)
log = logging.getLogger(__name__)


class CodeBackend(WorkspaceTools, Backend):
    """A real Python process per session; variables, imports and the working directory persist.

    Config: ``language`` (``"python"``, the default), ``python`` (the interpreter to run:
    default this worker's, or the system's ``python3`` when the jail user cannot read the
    worker's), ``cwd``, ``env`` (the variables it gets), ``max_output_bytes`` (per stream),
    ``workspace_snapshot_mb`` and the jail's keys (:mod:`backends.jail_settings`). The workspace's
    files survive a lost worker (its snapshot); the interpreter's memory cannot.
    """

    name = "code"
    warm_instances = 1

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        language = config.get("language", "python")
        if language not in LANGUAGES:
            raise ValueError(f"language {language!r} is not supported; use one of {LANGUAGES}")
        settings = process_config(config)
        requested = config.get("python")
        if requested is not None and not isinstance(requested, str):
            raise ValueError(f"python must be a path, not {requested!r}")
        if settings.jail.isolated:
            python, _ = jail_python(requested)
        else:
            python = requested or sys.executable
        info: dict[str, Any] = {"config": config}

        async def on_jail(box: JailedProcess) -> None:
            await info["workspace"].attach(box)

        interpreter = Interpreter(python, settings, on_jail)
        info["interpreter"] = interpreter
        info["workspace"] = Workspace(settings.workspace_snapshot_bytes, interpreter.ensure_jail)
        await interpreter.start()
        await info["workspace"].baseline()
        return info

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        await session_info["interpreter"].close()

    async def snapshot(self, session_info: dict[str, Any]) -> dict[str, Any] | None:
        """The workspace (``workspace``), when it changed since the last snapshot; else None."""
        return await changed_snapshot(session_info)

    async def restore(self, session_info: dict[str, Any], snapshot: dict[str, Any]) -> None:
        try:
            await session_info["workspace"].restore(snapshot.get("workspace"))
        except Exception:
            log.exception("restoring the workspace failed")

    def describe(self, session_info: dict[str, Any]) -> dict[str, Any]:
        interpreter: Interpreter = session_info["interpreter"]
        workspace: Workspace = session_info["workspace"]
        return {
            "pid": interpreter.pid,
            "cwd": interpreter.current_cwd(),
            "workspace": workspace.root,
        }

    @tool("code:execute")
    async def execute(
        self,
        code: str,
        timeout: Annotated[float, Field(gt=0, le=86400)] = 30,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Run Python in the session's interpreter, like a notebook cell; returns stdout, stderr,
        result (repr of a final expression) and error (type, message, traceback) or None."""
        interpreter: Interpreter = session_info["interpreter"]
        cell = await interpreter.run(code, timeout)
        data: dict[str, Any] = {
            "stdout": cell.stdout,
            "stderr": cell.stderr,
            "result": cell.result,
            "error": cell.error,
            "cwd": cell.cwd,
        }
        if cell.restarted:
            data["note"] = f"{cell.restarted}; variables and imports were lost"
        if cell.timed_out:
            kept = (
                "variables were lost"
                if cell.restarted
                else "the interpreter and its variables remain"
            )
            return ToolOutcome(
                code=ErrorCode.TIMEOUT,
                message=f"code ran past its {timeout:g}s timeout and was interrupted; {kept}",
                data=data,
            )
        return data
