"""AgentFlow's init calls: one resource, several at once, or a config file read on the server
(only under its ``--config-dir``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from client.agentflow import envelope
from contract import ErrorCode
from http_api.access import Gate
from http_api.answers import ApiError, answer, coded, ok
from http_api.inputs import checked_resource
from http_api.models import InitBatchBody, InitFromConfigBody, InitResourceBody
from http_api.routes.sessions import opened_answer
from http_api.sessions import SandboxSessions

router = APIRouter(tags=["init"])


@router.post("/api/v1/init/resource")
async def init_resource(body: InitResourceBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    resource_type = checked_resource(body.resource_type)
    opened = await sessions.create(resource_type, dict(body.init_config or {}))
    return opened_answer(opened, resource_type, "init:resource", started)


@router.post("/api/v1/init/batch")
async def init_batch(body: InitBatchBody, gate: Gate) -> JSONResponse:
    started = time.perf_counter()
    sessions = gate.sessions(body)
    results = {
        resource_type: await _init_one(sessions, resource_type, given)
        for resource_type, given in body.resource_configs.items()
    }
    succeeded = sum(1 for r in results.values() if r["status"] == "success")
    data = {
        "worker_id": sessions.worker_id,
        "results": results,
        "total": len(results),
        "success_count": succeeded,
    }
    if succeeded == len(results):
        code, message = ErrorCode.SUCCESS, "success"
    elif succeeded == 0:
        code, message = ErrorCode.ALL_REQUESTS_FAILED, "All resources failed to initialize"
    else:
        code = ErrorCode.PARTIAL_FAILURE
        message = f"{len(results) - succeeded} out of {len(results)} resources failed"
    return coded(code, message, data, "init:batch", started)


async def _init_one(
    sessions: SandboxSessions, resource_type: str, given: dict[str, Any]
) -> dict[str, Any]:
    """One resource of a batch: a refusal (bad name, policy, quota) is its line, not the
    batch's answer."""
    content = given.get("content", given)
    try:
        checked_resource(resource_type)
        opened = await sessions.create(resource_type, dict(content or {}))
    except ApiError as exc:
        return {"status": "error", "code": exc.code, "message": exc.message}
    return {
        "status": "success" if opened.ok else "error",
        "session_id": opened.session_id,
        "session_status": opened.session_status,
        "error": None if opened.ok else opened.message,
    }


@router.post("/api/v1/init/from-config")
async def init_from_config(body: InitFromConfigBody, gate: Gate) -> JSONResponse:
    """Reads a JSON config file on the server: only under the server's ``--config-dir``."""
    started = time.perf_counter()
    config_dir = gate.state.config_dir
    if config_dir is None:
        raise ApiError(
            403,
            ErrorCode.PERMISSION_DENIED,
            "this server reads no config files for callers (start it with --config-dir)",
        )
    if "\x00" in body.config_path:  # the OS refuses such a path (ValueError, else a 500)
        raise ApiError(400, ErrorCode.INVALID_INPUT, "config_path must not contain a NUL character")
    path = (config_dir / body.config_path).resolve()
    if not path.is_relative_to(config_dir) or not path.is_file():
        return answer(
            404,
            envelope(
                ErrorCode.INVALID_INPUT, f"Config file not found: {body.config_path}",
                {"config_path": body.config_path}, tool="init:from_config", started=started,
            ),
        )  # fmt: skip
    config = _read_config(path, body.config_path)
    _override(config, body.override_params or {})
    data = {"config_loaded": body.config_path, "config": config}
    return ok(data, "init:from_config", started)


def _read_config(path: Path, named: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, f"{named}: {exc}") from None


def _override(config: Any, overrides: dict[str, Any]) -> None:
    """AgentFlow's rule: an override replaces a key the config has (a dict is merged into a
    dict), and adds no key."""
    for key, value in overrides.items():
        if key in config:
            if isinstance(config[key], dict) and isinstance(value, dict):
                config[key].update(value)
            else:
                config[key] = value
