"""Every bound a session enforces, in one place: numbers with their ranges, sizes in bytes.

Validators, workflow start and the Python client all check against these, so a request out of
range is refused with a message naming the field and its range before it reaches history.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from contract.codes import ErrorCode

#: Session lifetime (seconds from the last call or refresh).
MIN_TTL_SECONDS = 1.0
MAX_TTL_SECONDS = 30 * 86400.0
DEFAULT_TTL_SECONDS = 300.0
#: Quiet time before an ACTIVE session shows IDLE.
MAX_IDLE_SECONDS = MAX_TTL_SECONDS
#: How long a session paused at its deadline is kept.
MAX_PAUSED_TTL_SECONDS = 90 * 86400.0
#: A tool call's own ``timeout`` parameter.
MAX_TOOL_TIMEOUT = 86400.0
DEFAULT_TOOL_TIMEOUT = 300.0
#: Added to a tool's own timeout, so the backend reports its timeout before Temporal does.
TOOL_TIMEOUT_MARGIN = 30.0

#: The event log: entries and bytes (message, role, content, tool, ids all counted).
MAX_EVENTS = 1000
MAX_LOG_BYTES = 512 * 1024
#: One appended entry (message or event) at most.
MAX_ENTRY_BYTES = 32 * 1024
MAX_ROLE_CHARS = 32
MAX_KIND_CHARS = 64
MAX_MESSAGE_CHARS = 1000
MAX_NAME_CHARS = 200
MAX_REASON_CHARS = 500
#: The session's metadata, all keys and values together, as compact JSON.
MAX_METADATA_BYTES = 64 * 1024
#: A tool call's parameters, and a backend config, as compact JSON.
MAX_PARAMS_BYTES = 1024 * 1024
MAX_CONFIG_BYTES = 64 * 1024
#: Levels of objects and arrays in a call's parameters, a config or metadata: far inside what
#: every JSON reader on the way takes (pydantic's parser stops at 200, its writer at 255).
MAX_JSON_DEPTH = 64
MAX_CHECKPOINTS = 20
MAX_CHECKPOINT_BYTES = 64 * 1024
#: Answers remembered so a retried request is answered, not run again.
MAX_REMEMBERED_RESULTS = 256
#: A remembered answer keeps its data up to this size (larger: code and message only).
MAX_REMEMBERED_DATA_BYTES = 64 * 1024
#: Calls in one execute_batch.
MAX_BATCH_CALLS = 50

#: Sandbox, session, user and agent ids.
ID_PATTERN = re.compile(r"^[A-Za-z0-9._@:-]{1,200}$")

#: Type of the rejection a session answers while it drains for continue-as-new; clients retry.
CONTINUING_AS_NEW = "ContinuingAsNew"
#: Type of the refusal of an open that meets a session while it closes (a destroy, its deadline):
#: clients retry until it has closed, and then start a fresh one (never "exists" for it).
SESSION_CLOSING = "SessionClosing"


def json_size(value: Any) -> int:
    """Bytes of a value as compact JSON: what a size limit is measured on."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def json_problem(field: str, value: Any) -> str | None:
    """Why ``value`` cannot travel as JSON, or None: objects and arrays nested deeper than
    :data:`MAX_JSON_DEPTH`, text that is not valid Unicode (a lone surrogate such as
    ``"\\ud800"``, which no UTF-8 encoder takes), or a value JSON has no form for."""
    nested = dict | list | tuple
    stack = [(value, 1)] if isinstance(value, nested) else []
    while stack:  # a loop, not recursion: the depth is what is being checked
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > MAX_JSON_DEPTH:
            return f"{field} nests deeper than {MAX_JSON_DEPTH} levels of objects and arrays"
        stack.extend((c, depth + 1) for c in children if isinstance(c, nested))
    try:
        to_json(value)  # as the data converter writes it
    except PydanticSerializationError as exc:
        if "surrogates not allowed" in str(exc):
            return (
                f"{field} holds text that is not valid Unicode (a lone surrogate such as "
                "'\\ud800'): send UTF-8 text, or base64 for bytes"
            )
        return f"{field} is not JSON: {exc}"
    return None


def number_problem(field: str, value: Any, high: float) -> str | None:
    """Why ``value`` is not a finite number of seconds in (0, ``high``], or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{field} must be a number, got {type(value).__name__}"
    if not math.isfinite(value) or not 0 < value <= high:
        return f"{field} must be more than 0 and at most {high:g} seconds, got {value!r}"
    return None


def tool_timeout(params: dict[str, Any]) -> float:
    """A call's timeout: its ``timeout`` parameter when valid, else the default.

    Validators refuse an out-of-range timeout first (``timeout_problem``); this is only what a
    checked request runs with.
    """
    value = params.get("timeout")
    if value is None or number_problem("timeout", value, MAX_TOOL_TIMEOUT) is not None:
        return DEFAULT_TOOL_TIMEOUT
    return float(value)


def timeout_problem(params: dict[str, Any]) -> tuple[int, str] | None:
    """``(code, message)`` when a call's ``timeout`` parameter is not a number (4004) or out of
    range (4000); None when it is fine or absent."""
    value = params.get("timeout")
    if value is None:
        return None
    problem = number_problem("params.timeout", value, MAX_TOOL_TIMEOUT)
    if problem is None:
        return None
    wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
    return (ErrorCode.WRONG_TYPE if wrong_type else ErrorCode.INVALID_INPUT), problem
