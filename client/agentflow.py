"""AgentFlow's answer shapes, built from ours: every Sandbox answer has AgentFlow's keys, with
our richer fields beside them. The HTTP server sends the same shapes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, SupportsIndex, overload

from contract import ErrorCode, ToolSpec

HIDDEN_MARK = "[HIDDEN]"


def session_name(view: Mapping[str, Any]) -> str:
    """A readable name: the custom name given at creation, else ``<resource>_<sandbox>``."""
    name = view.get("name") or ""
    return name or f"{view.get('resource_type', '')}_{view.get('sandbox_id', '')}"


def with_names(view: Mapping[str, Any]) -> dict[str, Any]:
    """A session view with AgentFlow's names for its fields added."""
    out = dict(view)
    out["session_name"] = session_name(view)
    out["expires_at"] = view.get("deadline")
    out.setdefault("auto_created", bool(view.get("temporary", False)))
    return out


def create_entry(opened: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """One resource's line in ``create_session``'s ``sessions``: ``status`` is ``success`` for a
    session made or found, ``error`` otherwise (``code`` and ``message`` say why)."""
    ok = opened.get("status") in ("success", "exists")
    entry = with_names(opened)
    entry["status"] = "success" if ok else "error"
    entry["config_applied"] = dict(config)
    if ok:
        entry["message"] = opened.get("message") or "success"
    else:
        entry["error"] = opened.get("message") or opened.get("error") or "creation failed"
    return entry


def create_answer(
    entries: Mapping[str, dict[str, Any]], started: float, *, single: dict[str, Any] | None
) -> dict[str, Any]:
    """``create_session``'s answer. For one resource type (``single``: what opening it answered)
    that session's own fields stay at the top, as before, with ``status`` success, exists or
    error; for several, ``status`` is success, partial or error."""
    succeeded = sum(1 for e in entries.values() if e["status"] == "success")
    summary: dict[str, Any] = {
        "create_time_ms": (time.perf_counter() - started) * 1000,
        "total": len(entries),
        "success": succeeded,
        "sessions": dict(entries),
    }
    if single is not None:
        return {**with_names(single), **summary}
    whole = succeeded == len(entries)
    return {"status": "success" if whole else ("partial" if succeeded else "error"), **summary}


class SessionList(list[dict[str, Any]]):
    """``list_sessions``' answer: a list of sessions, as AgentFlow answers; ``answer["sessions"]``
    (the earlier shape) is the same list."""

    @overload
    def __getitem__(self, key: SupportsIndex) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, key: slice) -> list[dict[str, Any]]: ...
    @overload
    def __getitem__(self, key: str) -> list[dict[str, Any]]: ...

    def __getitem__(self, key: Any) -> Any:
        if key == "sessions":
            return list(self)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return list(self) if key == "sessions" else default


def tool_info(spec: ToolSpec) -> dict[str, Any]:
    """A tool as AgentFlow lists it (``name`` is the action, ``full_name`` the resource's), with
    its parameters' JSON schema. A shared tool needs no session: AgentFlow calls that stateless."""
    resource, _, action = spec.name.partition(":")
    return {
        "name": action,
        "full_name": spec.name,
        "resource_type": resource,
        "stateless": spec.shared,
        "description": spec.description,
        "shared": spec.shared,
        "idempotent": spec.idempotent,
        "params_schema": spec.params_schema,
    }


def visible(spec: ToolSpec, include_hidden: bool) -> bool:
    return include_hidden or not spec.description.startswith(HIDDEN_MARK)


def warmup_status(backends: Iterable[str], warmed: Iterable[str]) -> dict[str, Any]:
    """Which backends exist and which were warmed (through this client or server)."""
    names = sorted(set(backends))
    warm = set(warmed)
    done = sum(1 for n in names if n in warm)
    return {
        "backends": {n: {"loaded": True, "warmed_up": n in warm} for n in names},
        "summary": {"total": len(names), "warmed_up": done, "pending": len(names) - done},
    }


def envelope(
    code: int,
    message: str,
    data: Any,
    *,
    tool: str,
    started: float | None = None,
    resource_type: str | None = None,
    session_id: str | None = None,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """An answer in the envelope's shape, for calls that are not one tool's (batch, status)."""
    elapsed = (time.perf_counter() - started) * 1000 if started is not None else None
    return {
        "code": int(code),
        "message": message,
        "data": data,
        "meta": {
            "tool": tool,
            "execution_time_ms": elapsed,
            "resource_type": resource_type,
            "session_id": session_id,
            "trace_id": trace_id or uuid.uuid4().hex,
        },
    }


def batch_answer(
    results: list[dict[str, Any]], total: int, started: float, trace_id: str | None
) -> dict[str, Any]:
    """``execute_batch``'s answer: code 0 when every call ran and succeeded, 5009 when none
    succeeded, 5010 otherwise (AgentFlow's rule)."""
    succeeded = sum(1 for r in results if r.get("code") == ErrorCode.SUCCESS)
    data = {
        "results": results,
        "total": total,
        "executed": len(results),
        "success_count": succeeded,
    }
    if succeeded == len(results) == total:
        code, message = ErrorCode.SUCCESS, "success"
    elif succeeded == 0:
        code, message = ErrorCode.ALL_REQUESTS_FAILED, "All actions failed"
    else:
        code = ErrorCode.PARTIAL_FAILURE
        message = f"{len(results) - succeeded} out of {len(results)} actions failed"
    return envelope(code, message, data, tool="batch:execute", started=started, trace_id=trace_id)
