"""How the worker talks to the bash process in a session's jail: the script one command is sent
as, the report the shell answers with after it, and the script that brings a shell back to a
snapshot. ``backends.shell.Shell`` drives it."""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from dataclasses import dataclass, field
from typing import Any

from backends.bash_exports import EXPORTS_COMMAND, parse_exports
from backends.host import ToolCallError
from backends.jail_settings import WRITABLE
from contract import ErrorCode

#: The Shell's logger (its messages keep the name they had when this lived in shell.py).
log = logging.getLogger("backends.shell")

#: Variables the shell itself changes; never part of a snapshot.
VOLATILE = frozenset({"_", "PWD", "OLDPWD", "SHLVL"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BASH = shutil.which("bash") or "/bin/bash"
#: The most a command's end-of-command report (exit code, cwd, exported variables) may hold.
REPORT_LIMIT = 32 * 1024 * 1024
#: The shell's descriptors: commands in, reports out, (stderr: nowhere), command stdout, stderr.
FDS = ("in", "out", "null", "out", "out")
#: Ctrl-C (SIGINT to the shell's process group) ends the running command's processes and, through
#: this trap, the rest of the command: the shell returns from it with 130 and lives on.
TRAP = "trap 'return 130' INT"


class ShellStateError(ToolCallError):
    """The request does not fit what the shell is doing (a command runs, or none does): the
    call answers 4000 with the message."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_INPUT, message)


@dataclass
class CommandResult:
    stdout: str
    stderr: str
    return_code: int | None
    cwd: str
    timed_out: bool = False
    restarted: bool = False
    #: Why the whole jail was made anew during this command (its files are gone), if it was.
    jail_lost: bool = False
    #: The command still runs: this is its output so far (``no_output_timeout``).
    running: bool = False
    #: Ended by :meth:`Shell.interrupt` (Ctrl-C, or killed when that was not enough).
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def snapshot_of(
    cwd: str, exported: dict[str, str] | None, start_env: dict[str, str]
) -> dict[str, Any]:
    """The cwd and the exported variables that differ from the shell's start environment."""
    env = {k: v for k, v in (exported or {}).items() if k not in VOLATILE}
    changed = {k: v for k, v in env.items() if start_env.get(k) != v}
    removed = sorted(k for k in start_env if k not in env and k not in VOLATILE) if exported else []
    return {"cwd": cwd, "env": changed, "unset": removed}


def restore_script(saved: dict[str, Any], isolated: bool) -> str:
    """The commands that bring a shell to a snapshot (``isolated``: in a jail of its own, whose
    writable directories start empty)."""
    lines = [TRAP]
    lines += [
        f"export {k}={shlex.quote(str(v))}"
        for k, v in saved.get("env", {}).items()
        if _NAME.match(k)
    ]
    lines += [f"unset {k}" for k in saved.get("unset", []) if _NAME.match(k)]
    cwd = saved.get("cwd")
    if cwd:
        quoted = shlex.quote(str(cwd))
        if isolated and any(str(cwd) == r or str(cwd).startswith(r + "/") for r in WRITABLE):
            # A new jail starts with empty directories: the path comes back, not its files.
            lines.append(f"mkdir -p -- {quoted} 2>/dev/null; cd -- {quoted} 2>/dev/null")
        else:
            lines.append(f"cd -- {quoted} 2>/dev/null")
    return "\n".join(lines)


def script(command: str, token: str, stdin: str | None) -> str:
    """What the shell reads for one command: the command, then its report."""
    source = shlex.quote(stdin) if stdin else "/dev/null"
    return (
        f"{{ . /dev/fd/5; }} 5<<'__SESSION_CMD_{token}' >&3 2>&4 <{source} 3>&- 4>&-\n"
        f"{command}\n"
        f"__SESSION_CMD_{token}\n"
        # The exported variables by a builtin: env -0 would cost a fork and an exec.
        f'__rc=$?; builtin printf \'\\n__SESSION_DONE_{token} %d\\0%s\\0\' "$__rc" "$PWD"; '
        f"{EXPORTS_COMMAND}; builtin printf '\\0__SESSION_END_{token}\\n'\n"
    )


def parse_report(payload: bytes) -> tuple[int, str, dict[str, str] | None]:
    """The exit code, the cwd and the exported variables (None: unreadable, keep the last)."""
    code, _, rest = payload.partition(b"\0")
    cwd, _, exports = rest.partition(b"\0")
    try:
        env: dict[str, str] | None = parse_exports(exports)
    except ValueError:
        log.warning("the shell's exported variables could not be read; the last ones are kept")
        env = None
    return int(code or b"-1"), cwd.decode(errors="replace"), env
