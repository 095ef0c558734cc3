"""The interpreter process of a ``code`` session: runs cells sent as JSON lines, answers in frames.

Started by :mod:`backends.interpreter` (through the jail's supervisor) with fd 0 = requests,
fds 1 and 2 = the cells' stdout and stderr (pipes the worker reads and bounds), fd 3 = answers.
Before any cell runs it moves the request and answer channels to random high descriptors that
are closed on exec, and points fd 0 at /dev/null: a cell, or a program it starts, finds only its
own stdout and stderr. Each answer is one line framed as ``\\n<nonce> <seq> <json>\\n``, with the
per-interpreter nonce the worker sent first and the request's sequence number; the worker reads
nothing else, so bytes a cell writes to any descriptor never shift an answer. (A cell runs in this
very process and could still find the nonce in its memory: then it can forge the answer to its own
cell, no other, and the real answer that follows is dropped as a duplicate.)

Standard library only: it runs in the interpreter the session is configured with.
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import random
import signal
import sys
import traceback
from typing import Any

CELL = "<cell>"


def run_cell(code: str, namespace: dict[str, Any], limit: int) -> dict[str, Any]:
    """Run one cell like a notebook: statements, then the value of a final expression."""
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
                result = _cut(repr(value), limit)
                namespace["_"] = value
    except KeyboardInterrupt:
        interrupted = True  # the host's timeout: the interpreter and its variables survive
    except BaseException as exc:  # SystemExit too: a cell cannot end the session by accident
        error = {
            "type": type(exc).__name__,
            "message": _cut(str(exc), limit),
            "traceback": _cut("".join(_user_traceback(exc)), limit),
        }
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a cell may have closed or replaced them
                pass
    return {"result": result, "error": error, "interrupted": interrupted, "cwd": _cwd()}


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... truncated: {len(text) - limit} of {len(text)} characters ...]"


def _user_traceback(exc: BaseException) -> list[str]:
    """The traceback from the user's code down, without this driver's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, tb)


def _hide(fd: int) -> int:
    """Move a protocol descriptor to a random free number >= 200, closed on exec."""
    soft, _ = _nofile()
    high = max(201, min(soft, 1024) - 1)
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, random.randrange(200, high))
    os.close(fd)
    return moved


def _nofile() -> tuple[int, int]:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _send(answers: Any, nonce: str, seq: int, answer: dict[str, Any]) -> None:
    body = json.dumps(answer, ensure_ascii=False).encode("utf-8", "replace")  # lone surrogates
    frame = f"\n{nonce} {seq} ".encode() + body + b"\n"
    # A late interrupt must not cut a frame in half.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        answers.write(frame)
        answers.flush()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def main() -> None:
    requests = os.fdopen(_hide(0), "rb")
    answers = os.fdopen(_hide(3), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    hello = json.loads(requests.readline())
    nonce, limit = str(hello["nonce"]), int(hello["limit"])
    del hello
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    _send(answers, nonce, 0, {"ready": True})
    while True:
        try:
            line = requests.readline()
            if not line:
                return
            request = json.loads(line)
            answer = run_cell(request["code"], namespace, limit)
            _send(answers, nonce, int(request["seq"]), answer)
        except KeyboardInterrupt:
            continue  # a timeout's interrupt that arrived between cells


if __name__ == "__main__":
    main()
