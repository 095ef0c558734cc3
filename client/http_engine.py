"""Sandbox(server_url=...): the same calls over HTTP to our server (``durable-sessions http``),
which speaks AgentFlow's protocol and runs them on the same session workflows.

Each call is one JSON request. Calls that fail to connect or time out are sent again, up to
``retry_count`` times: safe, because an execute carries its request id (the session answers a
repeated id once) and creating, refreshing and destroying a session are idempotent.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp
from temporalio.client import Client

from client.engine import SandboxIdentity
from client.errors import SessionError
from client.transport import CALL_SLACK, SessionGone, call_timeout
from contract import ErrorCode

#: The API key the client sends when none is given (``Authorization: Bearer <key>``).
API_KEY_ENV = "DURABLE_SESSIONS_API_KEY"


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without its userinfo, and the password there (the API key), if any."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host)), unquote(parts.password or "") or None


def public_url(url: str | None) -> str | None:
    """``url`` as it may be shown: without a key in it."""
    return None if url is None else split_userinfo(url)[0]


class HttpEngine:
    """The HTTP side of one Sandbox: its worker id, key, timeouts and connection pool (the
    surface of ``client.engine.Engine``)."""

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
        # A key in the URL (AgentFlow's form, http://alice:KEY@host) goes into the header, and
        # the URL kept (shown in messages, errors and the Sandbox) has none.
        url, in_url = split_userinfo(server_url)
        self.server_url = url.rstrip("/")
        self.worker_id = worker_id
        self.timeout = timeout
        self.retry_count = max(1, retry_count)
        self.session_ttl = session_ttl
        key = api_key if api_key is not None else in_url or os.environ.get(API_KEY_ENV)
        #: The key sent (a forked Sandbox sends the same).
        self.api_key = key
        self._headers = {"Content-Type": "application/json", "X-Worker-ID": worker_id}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._http: aiohttp.ClientSession | None = None
        self._started = False
        self.created: set[str] = set()

    @classmethod
    def of(
        cls, owner: SandboxIdentity, server_url: str, api_key: str | None, retry_count: int
    ) -> HttpEngine:
        """The engine of a Sandbox (``owner``: its id, timeout and session TTL)."""
        return cls(
            server_url,
            worker_id=owner.sandbox_id,
            api_key=api_key,
            timeout=owner.timeout,
            retry_count=retry_count,
            session_ttl=owner.session_ttl,
        )

    # --- connection --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._started

    @property
    def client(self) -> Client:
        raise RuntimeError(
            f"this Sandbox talks HTTP to {self.server_url}: it has no Temporal client"
        )

    async def start(self) -> None:
        """Open the connection pool and check that the server answers (raises ConnectionError)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(headers=self._headers)
        status, body = await self.request("GET", "/health", retries=1, timeout=10)
        if status != 200:
            raise ConnectionError(f"server at {self.server_url} answered {status}: {body}")
        self._started = True

    async def close(self) -> None:
        self._started = False
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
        self,
        resource_type: str,
        config: dict[str, Any],
        name: str,
        ttl: float | None,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What Sandbox._open answers: the session's view with status success/exists/error."""
        _, body = await self.post(
            "/api/v1/session/create",
            {
                "resource_type": resource_type,
                "session_config": config,
                "custom_name": name or None,
                "ttl": self.session_ttl if ttl is None else ttl,
                **{k: v for k, v in (options or {}).items() if v is not None},
            },
        )
        session = _data(body).get("session")
        if not isinstance(session, dict):
            return _failed(body, resource_type)
        if session.get("status") != "error":
            self.created.add(resource_type)
        return session

    async def fork(
        self, resource_type: str, n: int, from_checkpoint: str | None, ttl: float | None
    ) -> list[dict[str, Any]]:
        """The forked sessions' views (each with its own ``sandbox_id``); raises SessionError."""
        body = {"resource_type": resource_type, "n": n, "from_checkpoint": from_checkpoint}
        _, answer = await self.post(
            "/api/v1/session/fork", {**body, "ttl": ttl}, timeout=max(self.timeout, 300)
        )
        _raise_for(answer)
        return [dict(c["session"]) for c in _data(answer).get("children", [])]

    async def destroy(self, resource_type: str) -> dict[str, Any]:
        """The destroyed session's view; raises SessionGone when there was none."""
        body = await self._session_call("/api/v1/session/destroy", resource_type)
        return dict(_data(body)["session"])

    async def refresh(self, resource_type: str, ttl: float | None) -> dict[str, Any]:
        body = await self._session_call("/api/v1/session/refresh", resource_type, ttl=ttl)
        return dict(_data(body)["session"])

    async def reinitialize(
        self, resource_type: str, config: dict[str, Any], name: str
    ) -> dict[str, Any]:
        if name:
            config = {**config, "custom_name": name}
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

    async def execute(
        self,
        action: str,
        params: dict[str, Any],
        timeout: float | None,
        *,
        request_id: str,
        session_id: str | None,
        trace_id: str | None,
        stream: bool = False,
        strict_params: bool = False,
        auto_resume: bool | None = None,
    ) -> dict[str, Any]:
        """One call (the server answers its output at the end: ``stream`` has no effect)."""
        body = {
            "action": action,
            "params": params,
            "timeout": timeout,
            "request_id": request_id,
            "session_id": session_id,
            "trace_id": trace_id,
            "strict_params": strict_params,
            "auto_resume": auto_resume,
        }
        _, answer = await self.post(
            "/api/v1/execute", body, timeout=self._wait_for(params, timeout)
        )
        return _envelope(answer, action)

    async def execute_batch(
        self, items: list[dict[str, Any]], parallel: bool, stop_on_error: bool, trace_id: str
    ) -> dict[str, Any]:
        body = {
            "actions": items,
            "parallel": parallel,
            "stop_on_error": stop_on_error,
            "trace_id": trace_id,
        }
        wait = sum(self._wait_for(dict(i.get("params") or {}), None) for i in items)
        _, answer = await self.post("/api/v1/execute/batch", body, timeout=wait)
        return _envelope(answer, "batch:execute")

    async def stream_target(self, action: str) -> str | None:
        return None  # the server answers a call whole: no live output to follow

    def _wait_for(self, params: Mapping[str, Any], timeout: float | None) -> float:
        """How long a call may take: the constructor's timeout, or the call's own bound plus
        slack when that is longer."""
        own = call_timeout(params).total_seconds()
        if isinstance(timeout, int | float) and math.isfinite(timeout):
            own = max(own, float(timeout) + CALL_SLACK.total_seconds())
        return max(self.timeout, own)

    async def warmup(self, names: list[str] | None) -> dict[str, Any]:
        _, answer = await self.post("/api/v1/warmup", {"backends": names}, timeout=900)
        return dict(answer)

    async def warmup_status(self) -> dict[str, Any]:
        return dict(await self.get("/api/v1/warmup/status"))

    async def tools(self, include_hidden: bool) -> list[dict[str, Any]]:
        flag = "true" if include_hidden else "false"
        answer = await self.get(f"/api/v1/tools?include_hidden={flag}")
        return list(answer.get("tools", []))

    async def tool_schema(self, tool_name: str) -> dict[str, Any] | None:
        answer = await self.get(f"/api/v1/tools/{quote(tool_name, safe=':')}/schema")
        return dict(answer) if "full_name" in answer else None

    async def status(self) -> dict[str, Any]:
        _, answer = await self.post("/api/v1/lifecycle/status", {})
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
