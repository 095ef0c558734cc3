"""The ``code`` backend: a persistent Python interpreter per session."""

from __future__ import annotations

import sys
from typing import Annotated, Any

from pydantic import Field

from backends.base import Backend, tool
from backends.interpreter import Interpreter
from backends.process_config import process_config
from backends.sandbox import sandbox_python
from contract import ErrorCode, ToolOutcome

LANGUAGES = ("python",)


class CodeBackend(Backend):
    """A real Python process per session; variables, imports and the working directory persist.

    Config: ``language`` (``"python"``, the default), ``python`` (the interpreter to run:
    default this worker's, or the system's ``python3`` when the sandbox user cannot read the
    worker's), ``cwd``, ``env`` (the variables it gets), ``max_output_bytes`` (per stream) and
    the sandbox's keys (:mod:`backends.sandbox`).
    """

    name = "code"

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        language = config.get("language", "python")
        if language not in LANGUAGES:
            raise ValueError(f"language {language!r} is not supported; use one of {LANGUAGES}")
        settings = process_config(config)
        requested = config.get("python")
        if requested is not None and not isinstance(requested, str):
            raise ValueError(f"python must be a path, not {requested!r}")
        if settings.sandbox.isolated:
            python, _ = sandbox_python(requested)
        else:
            python = requested or sys.executable
        interpreter = Interpreter(python, settings)
        await interpreter.start()
        return {"interpreter": interpreter, "config": config}

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        await session_info["interpreter"].close()

    def describe(self, session_info: dict[str, Any]) -> dict[str, Any]:
        interpreter: Interpreter = session_info["interpreter"]
        return {"pid": interpreter.pid, "cwd": interpreter.current_cwd()}

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
