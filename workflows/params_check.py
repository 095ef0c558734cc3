"""A deterministic, dependency-free check of tool parameters against a tool's JSON schema.

The update validator uses it to reject a bad request before it reaches history; the worker
validates again with the full pydantic model before the tool runs.
"""

from __future__ import annotations

from typing import Any

from contract import ErrorCode

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _matches(value: Any, schema: dict[str, Any]) -> bool:
    if "anyOf" in schema:
        return any(_matches(value, option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind is None:
        return True
    kinds = kind if isinstance(kind, list) else [kind]
    for name in kinds:
        types = _JSON_TYPES.get(name, (object,))
        # bool is an int in Python, not in JSON.
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, types):
            return True
    return False


#: Parameters every call may carry, declared or not: ``timeout`` bounds any call (a tool that
#: does not declare it never sees it; the worker cancels the call there).
EVERY_CALL = frozenset({"timeout"})


def unknown_params(schema: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The parameters a tool's schema does not declare (none when it takes any)."""
    if schema.get("additionalProperties", True) is not False:
        return []
    properties: dict[str, Any] = schema.get("properties", {})
    return [name for name in params if name not in properties and name not in EVERY_CALL]


def check_params(
    tool: str, schema: dict[str, Any], params: dict[str, Any], *, strict: bool = False
) -> tuple[int, str] | None:
    """Return ``(code, message)`` for the first problem, or None when the parameters fit.
    A parameter the schema does not declare is a problem (4000) only when ``strict``: else the
    worker drops it and names it in ``meta.ignored_params``."""
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in params:
            return ErrorCode.MISSING_FIELD, f"{tool}: missing required parameter '{name}'"
    for name, value in params.items():
        prop = properties.get(name)
        if prop is None:
            if strict and name not in EVERY_CALL and schema.get("additionalProperties") is False:
                known = ", ".join(properties) or "none"
                return (
                    ErrorCode.INVALID_INPUT,
                    f"{tool}: unknown parameter '{name}' (takes: {known})",
                )
            continue
        if not _matches(value, prop):
            expected = prop.get("type") or "a value of the declared type"
            return (
                ErrorCode.WRONG_TYPE,
                f"{tool}: parameter '{name}' must be {expected}, got {type(value).__name__}",
            )
    return None
