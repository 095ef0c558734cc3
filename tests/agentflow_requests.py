"""The HTTP requests AgentFlow's client sends, written from reading its source (OpenDCAI/AgentFlow,
``sandbox/client.py`` ``HTTPServiceClient`` and ``sandbox/sandbox.py`` ``Sandbox``): each call's
method, path and JSON body, and the headers sent with every request. Tests drive our server with
exactly these, so AgentFlow's own client works against it unchanged.

Notes from the source that shape these fixtures:
- every request carries ``Content-Type: application/json`` and ``X-Worker-ID: <worker id>``;
- ``params`` is ``params or {}``, ``timeout`` is sent even when None, ``custom_name`` too;
- refresh sends ``resource_type`` only when one is named;
- ``list_tools`` puts a Python bool into the query string (``include_hidden=False``);
- AgentFlow's ``Sandbox.reinitialize`` is destroy then create; its ``destroy_session(None)``
  lists first, then destroys each;
- any status >= 400 makes its client raise, so status codes matter as much as bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None


def headers(worker_id: str, api_key: str | None = None) -> dict[str, str]:
    found = {"Content-Type": "application/json", "X-Worker-ID": worker_id}
    if api_key is not None:  # ours: AgentFlow sends none (see basic_auth_url for its client)
        found["Authorization"] = f"Bearer {api_key}"
    return found


def health() -> Call:
    return Call("GET", "/health")


def execute(
    worker_id: str, action: str, params: dict[str, Any] | None = None, timeout: int | None = None
) -> Call:
    body = {"worker_id": worker_id, "action": action, "params": params or {}, "timeout": timeout}
    return Call("POST", "/api/v1/execute", body)


def execute_batch(
    worker_id: str,
    actions: list[dict[str, Any]],
    parallel: bool = False,
    stop_on_error: bool = True,
) -> Call:
    body = {
        "worker_id": worker_id,
        "actions": actions,
        "parallel": parallel,
        "stop_on_error": stop_on_error,
    }
    return Call("POST", "/api/v1/execute/batch", body)


def get_status(worker_id: str) -> Call:
    return Call("POST", "/api/v1/lifecycle/status", {"worker_id": worker_id})


def heartbeat(worker_id: str) -> Call:
    return Call("POST", "/api/v1/lifecycle/heartbeat", {"worker_id": worker_id})


def create_session(
    worker_id: str,
    resource_type: str,
    session_config: dict[str, Any] | None = None,
    custom_name: str | None = None,
) -> Call:
    body = {
        "worker_id": worker_id,
        "resource_type": resource_type,
        "session_config": session_config or {},
        "custom_name": custom_name,
    }
    return Call("POST", "/api/v1/session/create", body)


def destroy_session(worker_id: str, resource_type: str) -> Call:
    body = {"worker_id": worker_id, "resource_type": resource_type}
    return Call("POST", "/api/v1/session/destroy", body)


def list_sessions(worker_id: str) -> Call:
    return Call("POST", "/api/v1/session/list", {"worker_id": worker_id})


def destroy_all_sessions(worker_id: str) -> Call:
    return Call("POST", "/api/v1/worker/disconnect", {"worker_id": worker_id})


def refresh_session(worker_id: str, resource_type: str | None = None) -> Call:
    body: dict[str, Any] = {"worker_id": worker_id}
    if resource_type:
        body["resource_type"] = resource_type
    return Call("POST", "/api/v1/session/refresh", body)


def init_resource(
    worker_id: str, resource_type: str, init_config: dict[str, Any] | None = None
) -> Call:
    body = {
        "worker_id": worker_id,
        "resource_type": resource_type,
        "init_config": init_config or {},
    }
    return Call("POST", "/api/v1/init/resource", body)


def init_batch(worker_id: str, resource_configs: dict[str, dict[str, Any]]) -> Call:
    body = {"worker_id": worker_id, "resource_configs": resource_configs}
    return Call("POST", "/api/v1/init/batch", body)


def list_tools(include_hidden: bool = False) -> Call:
    return Call("GET", f"/api/v1/tools?include_hidden={include_hidden}")


def get_tool_schema(tool_name: str) -> Call:
    return Call("GET", f"/api/v1/tools/{tool_name}/schema")


def warmup(backends: list[str] | None) -> Call:
    return Call("POST", "/api/v1/warmup", {"backends": backends})


def warmup_status() -> Call:
    return Call("GET", "/api/v1/warmup/status")


def shutdown_server(force: bool = False, cleanup_sessions: bool = True) -> Call:
    return Call(
        "POST", "/api/v1/server/shutdown", {"force": force, "cleanup_sessions": cleanup_sessions}
    )
