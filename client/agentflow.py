"""AgentFlow's answer shapes, built from ours: every Sandbox answer has AgentFlow's keys, with
our richer fields beside them. The HTTP server sends the same shapes."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, SupportsIndex, overload

from contract import DEFAULT_TTL_SECONDS, ErrorCode, ToolSpec
from contract.limits import MAX_TTL_SECONDS, number_problem

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


# --- the answers of Sandbox's calls ----------------------------------------------------------

#: AgentFlow's Sandbox options that have no meaning here (it starts its own server process;
#: ours runs as a service): accepted so AgentFlow code runs, and otherwise ignored.
AGENTFLOW_ONLY_OPTIONS = frozenset(
    {
        "auto_start_server",
        "server_config_path",
        "server_startup_timeout",
        "server_check_interval",
        "log_level",
    }
)


@dataclass(frozen=True)
class Reach:
    """How a Sandbox reaches its sessions, as AgentFlow may give it: a server URL (HTTP), the
    worker id, the HTTP timeout and retries, and the backends to warm."""

    server_url: str | None
    worker_id: str | None
    timeout: float
    retry_count: int
    warmup_resources: Iterable[str] | None

    def read(self, config: Any) -> Reach:
        """With AgentFlow's ``SandboxConfig``'s fields, where not given as arguments."""
        return Reach(
            self.server_url or getattr(config, "server_url", None),
            self.worker_id or getattr(config, "worker_id", None),
            getattr(config, "timeout", None) or self.timeout,
            getattr(config, "retry_count", None) or self.retry_count,
            self.warmup_resources or getattr(config, "warmup_resources", None),
        )

    def at(self, url: str) -> Reach:
        """A URL given as the first argument (AgentFlow's): the server, unless one was given."""
        return replace(self, server_url=self.server_url or url)


def check_options(options: Mapping[str, Any]) -> None:
    """TypeError for a keyword that is neither ours nor one of AgentFlow's ignored options."""
    unknown = sorted(set(options) - AGENTFLOW_ONLY_OPTIONS)
    if unknown:
        raise TypeError(f"Sandbox() got unexpected keyword arguments {unknown}")


def wanted_sessions(
    resource_type: str | Iterable[str] | Mapping[str, Mapping[str, Any] | None],
    config: Mapping[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """``create_session``'s first two arguments in any of AgentFlow's forms (one type, several,
    or a config per type), as a config per type."""
    if isinstance(resource_type, str):
        return {resource_type: dict(config or {})}
    if isinstance(resource_type, Mapping):
        return {k: dict(v or {}) for k, v in resource_type.items()}
    return {k: dict(config or {}) for k in resource_type}


def merged_params(params: Mapping[str, Any] | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the other keyword arguments of a call added (AgentFlow's rule)."""
    merged = dict(params or {})
    for key, value in extra.items():
        if key not in merged and value is not None:
            merged[key] = value
    return merged


def opened(
    view: Mapping[str, Any], *, created: bool, failed: bool, code: int | None
) -> dict[str, Any]:
    """What opening a session answers: its view with ``status`` success (made), exists (found
    live) or error (its instance could not be made: ``code``) and ``session_status``."""
    out = dict(view)
    if failed:
        out["status"] = "error"
        out["code"] = code or ErrorCode.INITIALIZE_FAILED
    else:
        out["status"] = "success" if created else "exists"
    out["session_status"] = view.get("status")
    return out


def open_refused(
    resource_type: str, sandbox_id: str, name: str, code: int, message: str
) -> dict[str, Any]:
    """What opening a session answers when the request was refused."""
    return {
        "status": "error",
        "code": code,
        "message": message,
        "resource_type": resource_type,
        "sandbox_id": sandbox_id,
        "session_id": None,
        "name": name,
    }


def refresh_answer(
    types: list[str],
    refreshed: Mapping[str, Mapping[str, Any]],
    failed: Mapping[str, tuple[int, str]],
    resource_type: str | Iterable[str] | None,
) -> dict[str, Any]:
    """``refresh_sessions``' answer: ``status`` (success, partial, not_found), ``refreshed``
    (views with names), ``not_found``, and AgentFlow's ``refreshed_count`` and ``details``;
    ``expires_at`` and ``session_id`` at the top for one type."""
    views = {rt: with_names(v) for rt, v in refreshed.items()}
    details: dict[str, Any] = {}
    for rt in types:
        if rt in views:
            details[rt] = {"status": "refreshed", "expires_at": views[rt]["expires_at"]}
        elif rt in failed:
            details[rt] = {"status": "error", "code": failed[rt][0], "error": failed[rt][1]}
    missing = [rt for rt in types if rt in failed]
    errors = [d for d in details.values() if d["status"] == "error"]
    answer: dict[str, Any] = {
        "status": "success" if not missing else ("partial" if views else "not_found"),
        "code": errors[0]["code"] if errors and not views else ErrorCode.SUCCESS,
        "message": f"Refreshed {len(views)} sessions"
        + "".join(f"; {rt}: {d['error']}" for rt, d in details.items() if d in errors),
        "refreshed": views,
        "not_found": missing,
        "refreshed_count": len(views),
        "details": details,
    }
    if isinstance(resource_type, str):
        one = views.get(resource_type, {})
        answer["resource_type"] = resource_type
        answer["session_id"] = one.get("session_id")
        answer["expires_at"] = one.get("expires_at")
    return answer


def destroy_answer(
    types: list[str],
    destroyed: Mapping[str, Mapping[str, Any]],
    failed: Mapping[str, tuple[int, str]],
) -> dict[str, Any]:
    """``destroy_session``'s answer: AgentFlow's ``status`` (success, or partial), ``total``,
    ``success``, ``details`` (per type), and our ``destroyed`` (final views) and ``not_found``."""
    views = {rt: with_names(v) for rt, v in destroyed.items()}
    details: dict[str, Any] = {}
    for rt in types:
        if rt in views:
            details[rt] = {
                "status": "success",
                "session_id": views[rt].get("destroyed_session_id"),
                "session_name": views[rt].get("session_name"),
                "message": f"Session destroyed for {rt}",
            }
        elif rt in failed:
            details[rt] = {"status": "error", "code": failed[rt][0], "error": failed[rt][1]}
    return {
        "status": "success" if len(views) == len(details) else "partial",
        "total": len(details),
        "success": len(views),
        "details": details,
        "destroyed": views,
        "not_found": [rt for rt in types if rt in failed],
    }


def reinitialized_by_open(opened: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """``reinitialize``'s answer when there was no live session and one was opened instead."""
    return {
        "status": "success" if opened["status"] != "error" else "error",
        "old_session_id": None,
        "new_session_id": opened["session_id"],
        "new_session_name": session_name(opened),
        "config_applied": dict(config),
        **({"code": opened["code"], "message": opened["message"]} if "code" in opened else {}),
    }


def warmup_answer(
    warmed: list[str], worker: str, tools: list[ToolSpec], summary: Mapping[str, Any]
) -> dict[str, Any]:
    """``warmup``'s answer when it ran: ours (``warmed``, ``worker``, ``tools``) and AgentFlow's
    (``results``, ``summary``)."""
    return {
        "status": "success",
        "warmed": warmed,
        "worker": worker,
        "tools": [t.model_dump(mode="json") for t in tools],
        "results": {n: True for n in warmed},
        "summary": summary["summary"],
    }


def warmup_failed(
    code: int, message: str, names: list[str] | None, summary: Mapping[str, Any]
) -> dict[str, Any]:
    failed = names or []
    return {
        "status": "error",
        "code": code,
        "message": message,
        "results": {n: False for n in failed},
        "errors": {n: message for n in failed},
        "summary": dict(summary),
    }


def status_answer(
    sandbox_id: str, sessions: list[dict[str, Any]], tools: int, started: float
) -> dict[str, Any]:
    """AgentFlow's status envelope: ``data`` has ``worker_id``, ``active_resources``,
    ``sessions`` (per type) and ``tools_available``."""
    keys = ("session_id", "session_name", "status", "created_at", "last_activity", "expires_at")
    data = {
        "worker_id": sandbox_id,
        "active_resources": [s["resource_type"] for s in sessions],
        "sessions": {s["resource_type"]: {k: s.get(k) for k in keys} for s in sessions},
        "tools_available": tools,
    }
    return envelope(
        ErrorCode.SUCCESS, "success", data, tool="session:status", started=started,
        resource_type="session",
    )  # fmt: skip


def session_ttl_from(config: Mapping[str, Any] | None, session_ttl: float | None) -> float:
    """The session TTL from the argument, the config or ``$SESSION_TTL``; ValueError when it is
    not a finite number of seconds in range."""
    value: Any = session_ttl
    if value is None:
        value = (config or {}).get("server", {}).get("session_ttl")
    if value is None:
        value = float(os.environ.get("SESSION_TTL", DEFAULT_TTL_SECONDS))
    problem = number_problem("session_ttl", value, MAX_TTL_SECONDS)
    if problem is not None:
        raise ValueError(problem)
    return float(value)
