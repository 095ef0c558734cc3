"""Sandbox(server_url=...): the same calls over HTTP to our server (``durable-sessions http``),
which speaks AgentFlow's protocol and runs them on the same session workflows.

Each call is one JSON request. Calls that fail to connect or time out are sent again, up to
``retry_count`` times: safe, because an execute carries its request id (the session answers a
repeated id once) and creating, refreshing and destroying a session are idempotent.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp

from client.errors import SessionError
from client.transport import SessionGone
from contract import ErrorCode

#: The API key the client sends when none is given (``Authorization: Bearer <key>``).
API_KEY_ENV = "DURABLE_SESSIONS_API_KEY"


class HttpEngine:
    """The HTTP side of one Sandbox: its worker id, key, timeouts and connection pool."""

    def __init__(
        self,
        server_url: str,
        *,
        worker_id: str,
        api_key: str | None,
        timeout: float,
        retry_count: int,
        session_ttl: float,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.worker_id = worker_id
        self.timeout = timeout
        self.retry_count = max(1, retry_count)
        self.session_ttl = session_ttl
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._headers = {"Content-Type": "application/json", "X-Worker-ID": worker_id}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._http: aiohttp.ClientSession | None = None

    # --- connection --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool and check that the server answers (raises ConnectionError)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(headers=self._headers)
        status, body = await self.request("GET", "/health", retries=1, timeout=10)
        if status != 200:
            raise ConnectionError(f"server at {self.server_url} answered {status}: {body}")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body). Raises ConnectionError when the server cannot be
        reached after the retries."""
        if self._http is None:
            raise RuntimeError("Sandbox is not started: use `async with Sandbox()` or `start()`")
        attempts = retries or self.retry_count
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        for attempt in range(attempts):
            try:
                async with self._http.request(
                    method, self.server_url + path, json=body, timeout=limit
                ) as response:
                    try:
                        answer = await response.json(content_type=None)
                    except ValueError:
                        text = (await response.text())[:500]
                        answer = {"code": ErrorCode.INTERNAL, "message": text, "data": None}
                    return response.status, answer
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if attempt == attempts - 1:
                    raise ConnectionError(f"cannot reach {self.server_url}: {exc!r}") from exc
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def post(self, path: str, body: dict[str, Any], **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, {"worker_id": self.worker_id, **body}, **kw)

    # --- the calls Sandbox makes ---------------------------------------------------------------

    async def open(
        self, resource_type: str, config: dict[str, Any], name: str, ttl: float | None
    ) -> dict[str, Any]:
        """What Sandbox._open answers: the session's view with status success/exists/error."""
        _, body = await self.post(
            "/api/v1/session/create",
            {
                "resource_type": resource_type,
                "session_config": config,
                "custom_name": name or None,
                "ttl": self.session_ttl if ttl is None else ttl,
            },
        )
        session = _data(body).get("session")
        if isinstance(session, dict):
            return session
        return _failed(body, resource_type)

    async def destroy(self, resource_type: str) -> dict[str, Any]:
        """The destroyed session's view; raises SessionGone when there was none."""
        body = await self._session_call("/api/v1/session/destroy", resource_type)
        return dict(_data(body)["session"])

    async def refresh(self, resource_type: str, ttl: float | None) -> dict[str, Any]:
        body = await self._session_call("/api/v1/session/refresh", resource_type, ttl=ttl)
        return dict(_data(body)["session"])

    async def reinitialize(self, resource_type: str, config: dict[str, Any]) -> dict[str, Any]:
        _, body = await self.post(
            "/api/v1/session/reinitialize", {"resource_type": resource_type, "config": config}
        )
        data = _data(body)
        if data.get("status"):
            return dict(data)
        return {"status": "error", "code": _code(body), "message": _message(body)}

    async def describe(self, resource_type: str) -> dict[str, Any] | None:
        status, body = await self.post("/api/v1/session/describe", {"resource_type": resource_type})
        if status == 404:
            return None
        _raise_for(body)
        return dict(_data(body)["session"])

    async def events(self, resource_type: str, query: dict[str, Any]) -> dict[str, Any]:
        _, body = await self.post(
            "/api/v1/session/events", {"resource_type": resource_type, **query}
        )
        _raise_for(body)
        return dict(_data(body))

    async def list_sessions(self) -> list[dict[str, Any]]:
        _, body = await self.post("/api/v1/session/list", {})
        _raise_for(body)
        return list(_data(body).get("sessions", []))

    async def execute(self, body: dict[str, Any], wait: float) -> dict[str, Any]:
        _, answer = await self.post("/api/v1/execute", body, timeout=wait)
        return _envelope(answer, body.get("action", ""))

    async def execute_batch(self, body: dict[str, Any], wait: float) -> dict[str, Any]:
        _, answer = await self.post("/api/v1/execute/batch", body, timeout=wait)
        return _envelope(answer, "batch:execute")

    async def warmup(self, names: list[str] | None) -> dict[str, Any]:
        _, answer = await self.post("/api/v1/warmup", {"backends": names}, timeout=900)
        return dict(answer)

    async def get(self, path: str) -> Any:
        _, answer = await self.request("GET", path)
        return answer

    async def _session_call(self, path: str, resource_type: str, **extra: Any) -> Any:
        status, body = await self.post(path, {"resource_type": resource_type, **extra})
        if status == 404 or _code(body) == ErrorCode.NO_SESSION:
            raise SessionGone(ErrorCode.NO_SESSION, _message(body))
        _raise_for(body)
        return body


def _data(body: Any) -> dict[str, Any]:
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


def _code(body: Any) -> int:
    try:
        return int(body.get("code", ErrorCode.INTERNAL))
    except (AttributeError, TypeError, ValueError):
        return ErrorCode.INTERNAL


def _message(body: Any) -> str:
    return str(body.get("message", "")) if isinstance(body, dict) else str(body)


def _raise_for(body: Any) -> None:
    code = _code(body)
    if code != ErrorCode.SUCCESS:
        raise SessionError(code, _message(body))


def _failed(body: Any, resource_type: str) -> dict[str, Any]:
    return {
        "status": "error",
        "code": _code(body),
        "message": _message(body),
        "resource_type": resource_type,
        "session_id": None,
    }


def _envelope(answer: Any, tool: str) -> dict[str, Any]:
    """The server's envelope; anything else (a proxy's error page) as an internal error."""
    if isinstance(answer, dict) and "code" in answer and isinstance(answer.get("meta"), dict):
        return answer
    return {
        "code": _code(answer),
        "message": _message(answer),
        "data": None,
        "meta": {"tool": tool},
    }
