"""The HTTP API's routes, one router per concern, in the order the API documents them."""

from fastapi import APIRouter

from http_api.routes import execute, fork, health, init, lifecycle, sessions, stream, tools

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    execute.router,
    stream.router,
    lifecycle.router,
    sessions.router,
    fork.router,
    init.router,
    tools.router,
    lifecycle.server,
)

__all__ = ["ROUTERS"]
