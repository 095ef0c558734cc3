"""No request's parameters or config in a worker's log lines.

Exception messages are where values leak: a backend that rejects a config value names it
(``cwd 'relative/...' must be an absolute path``), a tool that raises may quote its parameters, and
the SDK's warning for a failed activity prints the exception with its whole chain. The session
gets that message back in its envelope (encrypted when a key is set); the log must not.

``install()`` (called by ``worker.run_worker``) wraps the process's log record factory. For
records of the Temporal SDK's loggers and of this project's, it

- renders an exception as its stack frames (file, line, function, source line) and each
  exception's type, with the message withheld (``ApplicationError`` keeps its type, our result
  code, e.g. ``4007``);
- cuts the two SDK messages that embed an exception's text at that text;
- replaces protobuf arguments (the SDK's DEBUG lines print whole activations, completions and
  requests, payloads included) with their type name.

``SESSIONS_LOG_EXCEPTION_MESSAGES=1`` turns this off, for debugging with trusted data only.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

#: Set to 1 to keep exception messages in log lines (trusted local debugging only).
SHOW_ENV = "SESSIONS_LOG_EXCEPTION_MESSAGES"
WITHHELD = "[message withheld]"

#: Loggers whose records are scrubbed: the SDK's and every first-party package's.
SCRUBBED_LOGGERS = (
    "temporalio",
    "activities",
    "backends",
    "workflows",
    "runtime",
    "client",
    "worker",
    "cli",
    "durable-sessions",
)

#: SDK log messages that embed an exception's text: cut there.
_SDK_MESSAGE_CUTS = ("original error: ", "with error of type ")

_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


def _scrubbed_name(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in SCRUBBED_LOGGERS)


def _describe(exc: BaseException) -> str:
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    code = getattr(exc, "type", None)  # temporalio ApplicationError: our result code
    if isinstance(code, str) and code.isdigit():
        name += f" (type {code})"
    return f"{name}: {WITHHELD}"


def format_exception_withheld(exc: BaseException) -> str:
    """The traceback of ``exc`` and its causes and contexts, every message withheld."""
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    lines: list[str] = []
    for item, link in reversed(chain):  # oldest first, as Python prints a chain
        if item.__traceback__ is not None:
            lines.append("Traceback (most recent call last):\n")
            lines += traceback.format_tb(item.__traceback__)
        lines.append(_describe(item) + "\n")
        if link is not None:
            lines.append(f"\n{link}\n\n")
    return "".join(lines).rstrip("\n")


def _scrub_arg(value: Any) -> Any:
    if isinstance(value, Message):
        return f"<{type(value).__name__} withheld>"
    if isinstance(value, BaseException):
        return _describe(value)
    return value


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Withhold exception messages and protobuf contents in one record (in place)."""
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = format_exception_withheld(record.exc_info[1])
        record.exc_info = None
    if isinstance(record.msg, str):
        for marker in _SDK_MESSAGE_CUTS:
            at = record.msg.find(marker)
            if at >= 0:
                record.msg = record.msg[: at + len(marker)] + WITHHELD
                record.args = None
    if isinstance(record.args, tuple):
        record.args = tuple(_scrub_arg(arg) for arg in record.args)
    elif isinstance(record.args, dict):
        record.args = {key: _scrub_arg(arg) for key, arg in record.args.items()}
    return record


def install() -> bool:
    """Scrub every later record of the SDK's and our loggers; idempotent. False when
    ``$SESSIONS_LOG_EXCEPTION_MESSAGES`` turns it off."""
    if os.environ.get(SHOW_ENV, "") not in ("", "0"):
        return False
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
    if getattr(previous, "_sessions_scrubbing", False):
        return True

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        return scrub(record) if _scrubbed_name(record.name) else record

    factory._sessions_scrubbing = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    return True
