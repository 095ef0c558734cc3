"""The FastAPI application: AgentFlow's routes, bodies, answers and status codes, each run on
``client.Sandbox`` for the caller's user.

The routes live in :mod:`http_api.routes`, one router per concern; who the caller is and the
key's rate come from the dependencies in :mod:`http_api.access`; the key's jail policy and session
quota apply in :mod:`http_api.sessions`; the status rule is :mod:`http_api.answers`'.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from temporalio.client import Client

from contract import DEFAULT_TASK_QUEUE
from http_api import handlers
from http_api.keys import KeyStore
from http_api.routes import ROUTERS
from http_api.state import Limits, State
from runtime.body_limit import BodyLimit

__all__ = ["Limits", "create_app"]


def create_app(
    *,
    client: Client | None = None,
    connect: Callable[[], Awaitable[Client]] | None = None,
    keys: KeyStore | None = None,
    limits: Limits | None = None,
    task_queue: str = DEFAULT_TASK_QUEUE,
    session_ttl: float | None = None,
    config_dir: Path | None = None,
) -> FastAPI:
    """The HTTP API on a Temporal ``client`` (or one ``connect`` makes at startup)."""
    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        temporal = client
        if temporal is None:
            if connect is None:
                raise RuntimeError("create_app needs a Temporal client or a way to connect")
            temporal = await connect()
        app.state.api = State(
            temporal,
            keys or KeyStore(),
            limits,
            task_queue=task_queue,
            session_ttl=session_ttl,
            config_dir=config_dir,
        )
        yield

    app = FastAPI(
        title="durable-sessions",
        description=(
            "AgentFlow's sandbox protocol over durable Temporal sessions. Send your API key as "
            "`Authorization: Bearer <key>`; sessions belong to the key's user."
        ),
        version="1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes, answer=handlers.too_large)
    handlers.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
