"""What a session's event log may show of a tool call's parameters.

The log is read by queries, listings and exports, which are not encrypted end to end the way the
call itself is (and are seen by operators): values under secret-looking names are replaced, and
long values are cut, so the log stays small and says what was called, not everything it carried.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
#: Parameter names that carry secrets, matched anywhere in the name, ignoring case.
SECRET_NAME = re.compile(
    r"passw(or)?d|passphrase|secret|token|api[_-]?key|authorization|credential|private[_-]?key"
    r"|cookie",
    re.IGNORECASE,
)
MAX_VALUE_CHARS = 200


def redact(value: Any, *, cut: bool = True) -> Any:
    """A copy of ``value`` safe for the event log; ``cut=False`` keeps long values whole."""
    if isinstance(value, dict):
        return {
            str(k): REDACTED if SECRET_NAME.search(str(k)) else redact(v, cut=cut)
            for k, v in value.items()
        }
    if isinstance(value, list):
        if not cut:
            return [redact(v, cut=cut) for v in value]
        return [redact(v) for v in value[:20]] + (
            [f"... {len(value) - 20} more"] if len(value) > 20 else []
        )
    if cut and isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return f"{value[:MAX_VALUE_CHARS]}... ({len(value)} chars)"
    return value
