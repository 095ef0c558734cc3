"""The ``bash`` backend: a persistent shell per session, its background processes and files."""

from __future__ import annotations

import json
import logging
import posixpath
from typing import Annotated, Any, Literal

from pydantic import Field

from backends.background import SIGNALS, Background
from backends.base import Backend, tool
from backends.host import ToolCallError
from backends.jail import JailedProcess
from backends.jail_settings import ControlError
from backends.process_config import process_config
from backends.shell import CommandResult, Shell, ShellStateError
from backends.workspace import Workspace, WorkspaceTools
from contract import ErrorCode, ToolOutcome

log = logging.getLogger(__name__)

Seconds = Annotated[float, Field(gt=0, le=86400)]
#: How long an interrupted command has to end before it is ended like a timed-out one.
INTERRUPT_GRACE = 2.0
Signal = Literal["TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "CONT", "STOP"]
assert set(SIGNALS) == set(Signal.__args__)  # type: ignore[attr-defined]


class BashBackend(WorkspaceTools, Backend):
    """A real bash process per session; cwd and exported variables persist between calls.

    Config: ``cwd`` (start directory), ``env`` (the variables it gets), ``max_output_bytes``
    (per stream, default 256 KiB), ``workspace_snapshot_mb`` (default 1024) and the jail's keys
    (:mod:`backends.jail_settings`).
    """

    name = "bash"
    warm_instances = 2

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        settings = process_config(config, TERM="dumb")
        background = Background()
        info: dict[str, Any] = {"config": config, "background": background}

        async def on_jail(box: JailedProcess) -> None:
            background.attach(box)
            await info["workspace"].attach(box)

        shell = Shell(settings, on_jail)
        info["shell"] = shell
        info["workspace"] = Workspace(settings.workspace_snapshot_bytes, shell.ensure_jail)
        await shell.start()
        await info["workspace"].baseline()
        return info

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        session_info["background"].close()
        await session_info["shell"].close()

    async def snapshot(self, session_info: dict[str, Any]) -> dict[str, Any] | None:
        """The shell's cwd and exports, the background process table (``processes``) and the
        workspace (``workspace``); None when none of them changed since the last one."""
        shell: Shell = session_info["shell"]
        workspace: Workspace = session_info["workspace"]
        background: Background = session_info["background"]
        state: dict[str, Any] = {**shell.snapshot(), "processes": background.table()}
        entry = await workspace.snapshot()
        signature = json.dumps([state, workspace.version], sort_keys=True, default=str)
        if signature == session_info.get("snapshot_signature"):
            return None
        session_info["snapshot_signature"] = signature
        if entry is not None:
            state["workspace"] = entry
        return state

    async def restore(self, session_info: dict[str, Any], snapshot: dict[str, Any]) -> None:
        workspace: Workspace = session_info["workspace"]
        try:
            await workspace.restore(snapshot.get("workspace"))
        except Exception:  # the shell's state still comes back
            log.exception("restoring the workspace failed")
        session_info["background"].load(snapshot.get("processes") or [])
        await session_info["shell"].restore(snapshot)

    def describe(self, session_info: dict[str, Any]) -> dict[str, Any]:
        shell: Shell = session_info["shell"]
        workspace: Workspace = session_info["workspace"]
        return {
            "pid": shell.pid,
            "cwd": shell.cwd,
            "workspace": workspace.root,
            "processes": session_info["background"].table(),
        }

    # --- the foreground command --------------------------------------------------------------

    @tool("bash:run")
    async def run(
        self,
        command: str,
        timeout: Seconds = 30,
        no_output_timeout: Seconds | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Run a command in the session's shell; returns stdout, stderr, return_code, cwd and
        running. timeout: the command is killed past it. no_output_timeout: answer once the
        command printed nothing that long, with its output so far and running: true; it goes
        on, reading its stdin from bash:stdin. An empty command collects more of a running one
        (timeout then bounds this call's wait)."""
        shell: Shell = session_info["shell"]
        if command == "" and shell.running:
            return _answer(await shell.resume(timeout, no_output_timeout), None)
        if command == "":
            raise ShellStateError(
                "no command is running: an empty command collects the output of one "
                "started with no_output_timeout"
            )
        return _answer(await shell.run(command, timeout, no_output_timeout), timeout)

    @tool("bash:stdin")
    async def stdin(
        self,
        text: str = "",
        eof: bool = False,
        handle: str | None = None,
        timeout: Seconds = 30,
        no_output_timeout: Seconds | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Send text to a running command's standard input (eof: then close it). Without handle:
        the foreground command started with no_output_timeout; the answer is what it prints
        next, as bash:run's. With handle: a background process; answers written and
        stdin_open (read its output with bash:output)."""
        data = text.encode("utf-8", "surrogatepass")
        if handle is not None:
            background: Background = session_info["background"]
            process = _process(background, handle)
            if process.stdin is None or process.stdin.closed or not process.running:
                raise ToolCallError(
                    ErrorCode.INVALID_INPUT, f"{handle} does not read input any more"
                )
            if data:
                process.stdin.write(data)
            if eof:
                process.stdin.close()
            return {"handle": handle, "written": len(data), **process.status_view()}
        shell: Shell = session_info["shell"]
        return _answer(await shell.send_input(data, eof, timeout, no_output_timeout), timeout)

    @tool("bash:interrupt")
    async def interrupt(
        self,
        grace: Annotated[float, Field(gt=0, le=60)] = INTERRUPT_GRACE,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Ctrl-C to the running foreground command (SIGINT to the shell's process group: the
        command and the rest of its line end, the shell stays). Still running after grace
        seconds: it is ended like a timed-out command (background processes are kept). Returns
        the rest of its output, as bash:run's."""
        shell: Shell = session_info["shell"]
        return _answer(await shell.interrupt(grace), None)

    # --- background processes ------------------------------------------------------------------

    @tool("bash:start")
    async def start(
        self,
        command: str,
        cwd: str | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Start a command in the background (its own process session in the jail, with the
        shell's exported variables, in cwd: default the shell's, a relative one inside it;
        4008 when it is no directory); returns its handle. It lives until it ends,
        bash:kill, or the session ends. Follow it with bash:status, bash:output, bash:stdin."""
        shell: Shell = session_info["shell"]
        background: Background = session_info["background"]
        await shell.ensure_jail()
        where = posixpath.join(shell.cwd, cwd) if cwd else shell.cwd  # relative: to the shell's
        try:
            process = await background.start(command, where, shell.environment())
        except OverflowError as exc:
            raise ToolCallError(ErrorCode.QUOTA_EXCEEDED, str(exc)) from None
        except FileNotFoundError as exc:
            raise ToolCallError(ErrorCode.NOT_FOUND, str(exc)) from None
        except ValueError as exc:
            raise ToolCallError(ErrorCode.INVALID_INPUT, str(exc)) from None
        except (ConnectionError, ControlError) as exc:
            raise ToolCallError(ErrorCode.TOOL_ERROR, f"could not start it: {exc}") from None
        return process.status_view()

    @tool("bash:status", idempotent=True)
    async def status(
        self, handle: str | None = None, *, session_info: dict[str, Any]
    ) -> dict[str, Any]:
        """The background processes (or one, by handle): status (running, exited, killed, lost),
        exit_code, output_bytes, started_at, ended_at."""
        background: Background = session_info["background"]
        if handle is not None:
            return _process(background, handle).status_view()
        processes = [background.get(e["handle"]).status_view() for e in background.table()]
        return {"processes": processes}

    @tool("bash:output", idempotent=True)
    async def output(
        self,
        handle: str,
        offset: Annotated[int, Field(ge=0)] = 0,
        max_bytes: Annotated[int, Field(ge=1, le=16 * 1024 * 1024)] | None = None,
        wait: Annotated[float, Field(ge=0, le=300)] = 0,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """A background process's output (stdout and stderr together) from a byte offset; wait:
        up to that many seconds for output past it. Returns output, offset, next_offset (pass
        it next time), dropped (bytes before what is kept: the newest 1 MiB is), running,
        exit_code."""
        background: Background = session_info["background"]
        process = _process(background, handle)
        if offset > process.output_bytes:
            raise ToolCallError(
                ErrorCode.INVALID_INPUT,
                f"offset {offset} is past the output's end ({process.output_bytes} bytes)",
            )
        if wait:
            await process.wait_output(offset, wait)
        limit = max_bytes or session_info["shell"].max_output_bytes
        data, start, dropped = process.output(offset, limit)
        text, covered = _utf8_prefix(data, final=not process.running)
        return {
            "handle": handle,
            "output": text,
            "offset": start,
            "next_offset": start + covered,
            "dropped": dropped,
            "total_bytes": process.output_bytes,
            "running": process.running,
            "status": process.status,
            "exit_code": process.exit_code,
        }

    @tool("bash:kill")
    async def kill(
        self,
        handle: str,
        signal: Signal = "TERM",
        grace: Annotated[float, Field(gt=0, le=60)] = 2.0,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Signal a background process: every process of its session. After TERM, what still
        runs grace seconds later gets KILL. Returns its status."""
        background: Background = session_info["background"]
        _process(background, handle)
        try:
            process = await background.kill(handle, signal, grace)
        except (ConnectionError, ControlError) as exc:
            raise ToolCallError(ErrorCode.TOOL_ERROR, f"could not signal it: {exc}") from None
        return process.status_view()


def _process(background: Background, handle: str) -> Any:
    try:
        return background.get(handle)
    except LookupError as exc:
        raise ToolCallError(ErrorCode.NOT_FOUND, str(exc)) from None


def _utf8_prefix(data: bytes, *, final: bool) -> tuple[str, int]:
    """Text of ``data``; a character cut at its end waits for the next read unless ``final``."""
    if not final:
        lead = len(data) - 1
        while lead >= 0 and len(data) - lead <= 3 and data[lead] & 0xC0 == 0x80:
            lead -= 1  # back over continuation bytes to the last character's first byte
        if lead >= 0 and data[lead] >= 0xC0:
            need = 2 if data[lead] < 0xE0 else 3 if data[lead] < 0xF0 else 4
            if len(data) - lead < need:
                data = data[:lead]
    return data.decode("utf-8", errors="replace"), len(data)


def _answer(result: CommandResult, timeout: float | None) -> dict[str, Any] | ToolOutcome:
    data: dict[str, Any] = {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "return_code": result.return_code,
        "cwd": result.cwd,
        "running": result.running,
    }
    notes = list(result.notes)
    if result.interrupted:
        data["interrupted"] = True
    if result.timed_out:
        return ToolOutcome(
            code=ErrorCode.TIMEOUT,
            message=(
                f"command timed out{f' after {timeout:g}s' if timeout else ''} and was killed; "
                "the shell was restarted with its working directory and exported variables "
                "(files and background processes kept)"
            ),
            data=data,
        )
    if result.jail_lost:
        notes.append(
            "the session's sandbox had ended; a new one was started (cwd and exported "
            "variables restored, /workspace from its last snapshot, /tmp lost)"
        )
    elif result.interrupted and result.restarted:
        notes.append(
            "the command did not end on Ctrl-C and was killed; the shell was restarted with "
            "its working directory and exported variables"
        )
    elif result.restarted and not result.interrupted:
        notes.append("the command ended the shell; a new shell was started")
    if notes:
        data["note"] = "; ".join(notes)
    return data
