"""The SDK's interactive processes (``pty_exec_start`` / ``pty_write_stdin``, the shell
capability's ``write_stdin`` tool) over the bash session's soft timeouts (docs/tools.md#bash).

Opt-in (``DurableSessionsSandboxClientOptions(pty=True)``): the command runs in the session's
persistent shell (``cd`` and ``export`` still carry over), and the call answers once it ends or
has printed nothing for the yield time; it goes on, and ``write_stdin`` feeds it (``bash:stdin``),
polls it (an empty ``bash:run``) or sends Ctrl-C (``bash:interrupt``). Its input is a FIFO, not a
terminal (``tty`` is accepted, no terminal is made), and one command runs at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from contract.extras import missing_extra

try:
    from agents.sandbox.errors import ExecTimeoutError, ExecTransportError, PtySessionNotFoundError
    from agents.sandbox.session.pty_types import (
        PTY_PROCESS_ID_MIN,
        PtyExecUpdate,
        clamp_pty_yield_time_ms,
        resolve_pty_write_yield_time_ms,
    )
    from agents.sandbox.types import User
    from agents.sandbox.util.token_truncation import formatted_truncate_text_with_token_count
except ModuleNotFoundError as exc:  # the [agents] extra
    raise (missing_extra(exc, "integrations.agents_sandbox_pty") or exc) from None

from contract import ErrorCode

CTRL_C = "\x03"
#: The bound of a command started interactively that names none (its hard limit, seconds).
PTY_TIMEOUT = 3600.0


class ShellPty:
    """``pty_exec_start`` and ``pty_write_stdin`` for :class:`DurableSessionsSandboxSession`.

    The session provides ``state.pty``, ``call(action, params)``, ``run_command(params)``,
    ``shell_script(parts)``, ``_prepare_exec_command`` and ``_shell_lock``.
    """

    _pty_process: int | None = None
    _pty_next: int = PTY_PROCESS_ID_MIN
    state: Any
    call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
    run_command: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
    shell_script: Callable[[list[str]], str]
    _prepare_exec_command: Callable[..., list[str]]
    _shell_lock: Any

    def supports_pty(self) -> bool:
        return bool(self.state.pty)

    async def pty_exec_start(
        self,
        *command: str | Path,
        timeout: float | None = None,
        shell: bool | list[str] = True,
        user: str | User | None = None,
        tty: bool = False,
        yield_time_s: float | None = None,
        max_output_tokens: int | None = None,
    ) -> PtyExecUpdate:
        parts = self._prepare_exec_command(*command, shell=shell, user=user)
        wait_ms = 10_000 if yield_time_s is None else int(yield_time_s * 1000)
        params = {
            "command": self.shell_script(parts),
            "timeout": timeout if timeout and timeout > 0 else PTY_TIMEOUT,
            "no_output_timeout": clamp_pty_yield_time_ms(wait_ms) / 1000,
        }
        async with self._shell_lock:
            answer = await self.run_command(params)
        process_id, self._pty_next = self._pty_next, self._pty_next + 1
        return self._update(answer, parts, process_id, max_output_tokens)

    async def pty_write_stdin(
        self,
        *,
        session_id: int,
        chars: str,
        yield_time_s: float | None = None,
        max_output_tokens: int | None = None,
    ) -> PtyExecUpdate:
        if session_id != self._pty_process:
            raise PtySessionNotFoundError(session_id=session_id)
        wait_ms = 250 if yield_time_s is None else int(yield_time_s * 1000)
        wait = resolve_pty_write_yield_time_ms(yield_time_ms=wait_ms, input_empty=not chars) / 1000
        async with self._shell_lock:
            if CTRL_C in chars:
                answer = await self.call("interrupt", {"grace": 2})
            elif chars:
                params = {"text": chars, "timeout": wait, "no_output_timeout": wait}
                answer = await self.call("stdin", params)
            else:
                params = {"command": "", "timeout": wait, "no_output_timeout": wait}
                answer = await self.call("run", params)
        return self._update(answer, ["write_stdin"], session_id, max_output_tokens)

    async def pty_terminate_all(self) -> None:
        """Ctrl-C to a command still running interactively (the SDK's stop and shutdown)."""
        if self._pty_process is None:
            return
        self._pty_process = None
        async with self._shell_lock:
            await self.call("interrupt", {"grace": 2})  # 4000 when it ended meanwhile: fine

    def _update(
        self, answer: dict[str, Any], command: list[str], process_id: int, max_tokens: int | None
    ) -> PtyExecUpdate:
        code, data = answer.get("code"), answer.get("data") or {}
        if code == ErrorCode.TIMEOUT:
            self._pty_process = None
            raise ExecTimeoutError(command=command, timeout_s=None, context={"code": code})
        if code != ErrorCode.SUCCESS:
            raise ExecTransportError(
                command=command,
                message=f"durable session: {answer.get('message')} (code {code})",
                context={"code": code},
            )
        stdout, stderr = str(data.get("stdout") or ""), str(data.get("stderr") or "")
        joiner = "" if not stdout or not stderr or stdout.endswith("\n") else "\n"
        text, original = formatted_truncate_text_with_token_count(
            f"{stdout}{joiner}{stderr}", max_tokens
        )
        running = bool(data.get("running"))
        self._pty_process = process_id if running else None
        return PtyExecUpdate(
            process_id=process_id if running else None,
            output=text.encode(),
            exit_code=None if running else int(data.get("return_code") or 0),
            original_token_count=original,
        )
