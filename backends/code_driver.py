"""The interpreter process of a ``code`` session: runs cells sent as JSON lines, answers in kind.

Started by :mod:`backends.interpreter` as ``python code_driver.py``. It speaks its protocol on
the file descriptors it was started with, then points fds 0-2 elsewhere: whatever the user's code
prints (``print``, ``os.system``, a C extension) lands in a per-cell capture file, never in the
protocol. Standard library only: it runs in the interpreter the session is configured with.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import tempfile
import traceback
from typing import Any

CELL = "<cell>"


def run_cell(code: str, namespace: dict[str, Any], limit: int) -> dict[str, Any]:
    """Run one cell like a notebook: statements, then the value of a final expression."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        answer = _captured(code, namespace, out.fileno(), err.fileno())
        answer["stdout"], answer["stderr"] = _read(out, limit), _read(err, limit)
    answer["cwd"] = os.getcwd()
    return answer


def _captured(code: str, namespace: dict[str, Any], out: int, err: int) -> dict[str, Any]:
    """Run a cell with fds 1 and 2 pointing at ``out`` and ``err``."""
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out, 1)
    os.dup2(err, 2)
    result: str | None = None
    error: dict[str, Any] | None = None
    interrupted = False
    try:
        tree = ast.parse(code, CELL, "exec")
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.Expr):
            tree.body.pop()
        exec(compile(tree, CELL, "exec"), namespace)
        if isinstance(last, ast.Expr):
            value = eval(compile(ast.Expression(last.value), CELL, "eval"), namespace)
            if value is not None:
                result = repr(value)
                namespace["_"] = value
    except KeyboardInterrupt:
        interrupted = True  # the host's timeout: the interpreter and its variables survive
    except BaseException as exc:  # SystemExit too: a cell cannot end the session by accident
        error = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(_user_traceback(exc)),
        }
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    return {"result": result, "error": error, "interrupted": interrupted}


def _user_traceback(exc: BaseException) -> list[str]:
    """The traceback from the user's code down, without this driver's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, tb)


def _read(f: Any, limit: int) -> str:
    f.seek(0)
    data = f.read(limit + 1)
    text: str = data[:limit].decode(errors="replace")
    return text + "\n[output truncated]" if len(data) > limit else text


def main() -> None:
    limit = int(sys.argv[1])
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # between cells, stray output goes nowhere, not into the protocol
        os.dup2(devnull, fd)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    answers.write(b'{"ready": true}\n')
    answers.flush()
    while True:
        try:
            line = requests.readline()
            if not line:
                return
            answer = run_cell(json.loads(line)["code"], namespace, limit)
            answers.write(json.dumps(answer).encode() + b"\n")
            answers.flush()
        except KeyboardInterrupt:
            continue  # a timeout's interrupt that arrived between cells


if __name__ == "__main__":
    main()
