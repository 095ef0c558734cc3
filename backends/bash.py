"""The ``bash`` backend: a persistent shell per session."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from backends.base import Backend, tool
from backends.process_config import process_config
from backends.shell import Shell
from contract import ErrorCode, ToolOutcome


class BashBackend(Backend):
    """A real bash process per session; cwd and exported variables persist between calls.

    Config: ``cwd`` (start directory), ``env`` (the variables it gets), ``max_output_bytes``
    (per stream, default 256 KiB) and the sandbox's keys (:mod:`backends.sandbox`).
    """

    name = "bash"

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        settings = process_config(config, TERM="dumb")
        shell = Shell(settings)
        await shell.start()
        return {"shell": shell, "config": config}

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        await session_info["shell"].close()

    async def snapshot(self, session_info: dict[str, Any]) -> dict[str, Any] | None:
        shell: Shell = session_info["shell"]
        return shell.snapshot()

    async def restore(self, session_info: dict[str, Any], snapshot: dict[str, Any]) -> None:
        shell: Shell = session_info["shell"]
        await shell.restore(snapshot)

    def describe(self, session_info: dict[str, Any]) -> dict[str, Any]:
        shell: Shell = session_info["shell"]
        return {"pid": shell.pid, "cwd": shell.cwd}

    @tool("bash:run")
    async def run(
        self,
        command: str,
        timeout: Annotated[float, Field(gt=0, le=86400)] = 30,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Run a command in the session's shell; returns stdout, stderr, return_code, cwd."""
        shell: Shell = session_info["shell"]
        result = await shell.run(command, timeout)
        data = {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "return_code": result.return_code,
            "cwd": result.cwd,
        }
        if result.timed_out:
            return ToolOutcome(
                code=ErrorCode.TIMEOUT,
                message=(
                    f"command timed out after {timeout:g}s and was killed; the shell was "
                    "restarted with its working directory and exported variables"
                ),
                data=data,
            )
        if result.sandbox_lost:
            data["note"] = (
                "the session's sandbox had ended; a new one was started (cwd and exported "
                "variables restored, files in /workspace and /tmp lost)"
            )
        elif result.restarted:
            data["note"] = "the command ended the shell; a new shell was started"
        return data
