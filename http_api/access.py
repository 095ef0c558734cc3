"""Authentication and rate limits, as FastAPI dependencies: a route names ``Who`` (or ``Gate``)
and never sees a key, a bucket or a header.

``authenticate`` finds the caller from the API key and takes one request from the key's rate;
``Gate`` adds the sandbox the request names and the caller's sessions there (jail policy and
session quota applied in :mod:`http_api.sessions`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from client import Sandbox
from contract import ErrorCode
from contract.limits import ID_PATTERN
from http_api.answers import ApiError
from http_api.caller import LOCAL, Caller
from http_api.inputs import checked_worker
from http_api.keys import ApiKey
from http_api.models import WorkerBody
from http_api.sessions import SandboxSessions
from http_api.state import State

#: The sandbox of a warmup that names none (AgentFlow's client sends ``X-Worker-ID`` always).
WARMUP_WORKER = "http-warmup"


def state_of(request: Request) -> State:
    """The server's shared state (set by the app's lifespan)."""
    api: State = request.app.state.api
    return api


def presented_key(request: Request) -> str | None:
    """``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or HTTP Basic with the key as the
    password (``http://user:<key>@host/`` in a URL: AgentFlow's client sends that unchanged)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return request.headers.get("x-api-key") or None


async def authenticate(request: Request) -> Caller:
    """The caller its key names (401 without a valid key, when the server has keys), charged
    one request of the key's rate (429 over it)."""
    state = state_of(request)
    if not state.keys.configured:
        return LOCAL
    presented = presented_key(request)
    entry = state.keys.verify(presented) if presented else None
    if entry is None:
        raise ApiError(
            401,
            ErrorCode.UNAUTHENTICATED,
            "a valid API key is required: send 'Authorization: Bearer <key>'"
            if presented is None
            else "this API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="durable-sessions"'},
        )
    charge(state, entry)
    return Caller(user_id=entry.user_id, admin=entry.admin, key=entry)


def charge(state: State, entry: ApiKey, count: int = 1, *, batch: int = 0) -> None:
    """Take ``count`` requests from the key's rate limit, or refuse (429, 4013). ``batch``: the
    number of actions of a batch being charged (its request was charged already)."""
    rate = entry.rate or state.limits.rate
    burst = entry.burst or max(state.limits.burst, int(rate))
    data: dict[str, Any] = {"rate": rate, "burst": burst}
    if batch > burst:  # no wait would let it through: say so instead of a Retry-After
        raise ApiError(
            429,
            ErrorCode.QUOTA_EXCEEDED,
            f"rate limit: a batch counts each of its actions as a request, and this key may "
            f"send at most {burst} at once; this batch has {batch} actions: split it into "
            f"batches of at most {burst}",
            data={**data, "actions": batch},
        )
    wait = state.rates.take(entry.key_id, rate, burst, count)
    if wait > 0:
        retry = max(1, int(wait + 0.999))
        what = f"this batch of {batch} actions counts {batch} requests; " if batch else ""
        raise ApiError(
            429,
            ErrorCode.QUOTA_EXCEEDED,
            f"rate limit: {what}this key may send {rate:g} requests a second (bursts of "
            f"{burst}); retry in {retry} s",
            data={**data, "actions": batch} if batch else data,
            headers={"Retry-After": str(retry)},
        )


#: The caller of a route, from its API key.
Who = Annotated[Caller, Depends(authenticate)]
#: The server's shared state.
Api = Annotated[State, Depends(state_of)]


@dataclass(frozen=True)
class Access:
    """An authenticated request: its caller, the server's state and the ``X-Worker-ID`` it
    sent; what a route reaches sandboxes and sessions through."""

    state: State
    who: Caller
    worker_header: str | None

    def worker(self, body: WorkerBody) -> str:
        """The sandbox id: the body's ``worker_id``, else the ``X-Worker-ID`` header."""
        return checked_worker(body.worker_id or self.worker_header)

    def header_worker(self) -> str | None:
        """The ``X-Worker-ID`` header when it is a valid sandbox id (routes with no body)."""
        worker_id = self.worker_header
        return worker_id if worker_id and ID_PATTERN.match(worker_id) else None

    def sandbox(self, worker_id: str) -> Sandbox:
        return self.state.sandbox(self.who, worker_id)

    def sessions(self, body: WorkerBody) -> SandboxSessions:
        """The caller's sessions in the sandbox the request names."""
        return self.at(self.worker(body))

    def at(self, worker_id: str) -> SandboxSessions:
        return SandboxSessions(self.state, self.who, worker_id)

    def charge_batch(self, actions: int) -> None:
        """A batch counts each of its actions as a request: charge the ones beyond the request
        itself (charged by ``authenticate``)."""
        if self.who.key is not None and actions > 1:
            charge(self.state, self.who.key, actions - 1, batch=actions)


async def _access(request: Request, who: Who) -> Access:
    return Access(state_of(request), who, request.headers.get("x-worker-id"))


#: An authenticated request's way to its sandboxes and sessions.
Gate = Annotated[Access, Depends(_access)]
