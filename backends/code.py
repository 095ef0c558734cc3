"""The ``code`` backend: a persistent Python interpreter per session."""

from __future__ import annotations

import json
import logging
import sys
import time
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
#: ``restore="replay"`` keeps at most this many cells, this many bytes of their code: past
#: either, recording stops and a restore replays nothing (it says so) rather than a part.
REPLAY_MAX_CELLS = 200
REPLAY_MAX_BYTES = 64 * 1024
#: The longest a restore spends replaying (the instance's creation has 120 s in all): past it,
#: the cells left are not run, and the first answer after says so.
REPLAY_BUDGET_SECONDS = 60.0
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
        restore = config.get("restore")
        if restore not in (None, "replay"):
            raise ValueError(f'restore must be "replay" or absent, not {restore!r}')
        info: dict[str, Any] = {"config": config}
        if restore == "replay":
            info["replay"] = {"cells": [], "bytes": 0, "overflow": False, "version": 0}

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
        """The workspace (``workspace``) and, with ``restore="replay"``, the recorded cells
        (``replay``), when either changed since the last snapshot; else None."""
        kept = session_info.get("replay")
        if kept is None:
            return await changed_snapshot(session_info)
        workspace: Workspace = session_info["workspace"]
        entry = await workspace.snapshot()
        signature = json.dumps([workspace.version, kept["version"]])
        if signature == session_info.get("snapshot_signature"):
            return None
        session_info["snapshot_signature"] = signature
        return {
            "workspace": entry,
            "replay": {"cells": kept["cells"], "overflow": kept["overflow"]},
        }

    async def restore(self, session_info: dict[str, Any], snapshot: dict[str, Any]) -> None:
        """The snapshot's workspace; then, with ``restore="replay"``, its recorded cells run
        again in order in this fresh interpreter (their side effects too)."""
        try:
            await session_info["workspace"].restore(snapshot.get("workspace"))
        except Exception:
            log.exception("restoring the workspace failed")
        recorded = snapshot.get("replay")
        if session_info.get("replay") is not None and isinstance(recorded, dict):
            await _replay(session_info, recorded)

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
        replay: bool = True,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Run Python in the session's interpreter, like a notebook cell; returns stdout, stderr,
        result (repr of a final expression) and error (type, message, traceback) or None. In a
        session made with restore="replay", a cell that succeeds is recorded and run again
        after a move; replay=False leaves this one out."""
        interpreter: Interpreter = session_info["interpreter"]
        cell = await interpreter.run(code, timeout)
        data: dict[str, Any] = {
            "stdout": cell.stdout,
            "stderr": cell.stderr,
            "result": cell.result,
            "error": cell.error,
            "cwd": cell.cwd,
        }
        report = session_info.pop("replay_report", None)
        if report is not None:  # the first answer after a restore says what was replayed
            data["replay"] = report
        succeeded = cell.error is None and not cell.timed_out and not cell.restarted
        if replay and succeeded and session_info.get("replay") is not None:
            _record(session_info["replay"], code, timeout)
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


def _record(kept: dict[str, Any], code: str, timeout: float) -> None:
    """Keep a cell that succeeded, within the bounds; past them, stop keeping any."""
    if kept["overflow"]:
        return
    size = len(code.encode("utf-8", "surrogatepass"))
    if len(kept["cells"]) >= REPLAY_MAX_CELLS or kept["bytes"] + size > REPLAY_MAX_BYTES:
        kept["overflow"] = True
        kept["cells"] = []  # a part would rebuild a state that never was: replay none
    else:
        kept["cells"].append({"code": code, "timeout": timeout})
        kept["bytes"] += size
    kept["version"] += 1


async def _replay(session_info: dict[str, Any], recorded: dict[str, Any]) -> None:
    """Run the recorded cells in order, each within its own timeout and all within
    :data:`REPLAY_BUDGET_SECONDS`, stopping at the first that fails; keep the log (this
    session's cells from here on are added to it) and a report for the next answer."""
    cells = [c for c in recorded.get("cells") or [] if isinstance(c, dict) and "code" in c]
    kept = session_info["replay"]
    kept.update(
        cells=cells,
        overflow=bool(recorded.get("overflow")),
        bytes=sum(len(str(c["code"]).encode("utf-8", "surrogatepass")) for c in cells),
    )
    report: dict[str, Any] = {"cells": len(cells), "replayed": 0, "failed": None}
    if kept["overflow"]:
        report["skipped"] = (
            f"the session's cells passed {REPLAY_MAX_CELLS} cells or {REPLAY_MAX_BYTES} bytes: "
            "none were kept, none replayed"
        )
    interpreter: Interpreter = session_info["interpreter"]
    started = time.monotonic()
    for index, entry in enumerate(cells if not kept["overflow"] else []):
        left = REPLAY_BUDGET_SECONDS - (time.monotonic() - started)
        if left <= 0:
            report["skipped"] = (
                f"replay ran past {REPLAY_BUDGET_SECONDS:g}s: cells {index}.. not run"
            )
            break
        cell = await interpreter.run(str(entry["code"]), min(float(entry.get("timeout", 30)), left))
        if cell.error is not None or cell.timed_out or cell.restarted:
            problem = cell.error or {"type": "Timeout" if cell.timed_out else "Restarted"}
            report["failed"] = {"cell": index, "error": problem}
            break
        report["replayed"] = index + 1
    report["took_ms"] = round((time.monotonic() - started) * 1000, 1)
    session_info["replay_report"] = report
