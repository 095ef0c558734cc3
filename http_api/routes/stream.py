"""Live output over HTTP, as server-sent events: a call whose output arrives while it runs
(``execute/stream``: ``chunk`` events, then one ``result`` event with the envelope), and a watcher
of a session's output from an offset (``session/output``: ``chunk`` events until the session
closes). Each event's data is one JSON object: an ``OutputChunk`` (``kind``, ``text``,
``offset``...) or the envelope. A watch refused by the session answers an ``error`` event with
``code`` and ``message``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import Field

from client import SessionError
from http_api.access import Gate
from http_api.inputs import checked_resource
from http_api.models import ExecuteBody, SessionBody
from http_api.owners import check_read
from http_api.routes.execute import StrictHeader, call_options

router = APIRouter(tags=["live output"])


class WatchBody(SessionBody):
    from_offset: int = Field(default=0, ge=0, description="resume from the last offset + 1")
    request_id: str | None = Field(default=None, description="one streaming call's output only")


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    # No buffering proxies in between: each event is sent as it is made.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


@router.post("/api/v1/execute/stream")
async def execute_stream(
    body: ExecuteBody, gate: Gate, x_strict_params: StrictHeader = None
) -> StreamingResponse:
    """Ours: ``execute`` with its output as it arrives (``chunk`` events), then ``result``."""
    sandbox = gate.sandbox(gate.worker(body))
    options = call_options(body, gate, x_strict_params)
    items = sandbox.execute_stream(body.action, body.params or {}, body.timeout, **options)

    async def events() -> AsyncIterator[str]:
        async for item in items:
            if isinstance(item, dict):
                yield _event("result", item)
            else:
                yield _event("chunk", item.model_dump(mode="json"))

    return _sse(events())


@router.post("/api/v1/session/output")
async def watch_output(body: WatchBody, gate: Gate) -> StreamingResponse:
    """Ours: a session's live output from ``from_offset`` on, until the session closes."""
    resource_type = checked_resource(body.resource_type)
    sessions = gate.sessions(body)
    view = await sessions.find(resource_type)
    if view is not None:
        check_read(gate.who, view)
    chunks = sessions.sandbox.watch(resource_type, body.from_offset, request_id=body.request_id)

    async def events() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield _event("chunk", chunk.model_dump(mode="json"))
        except SessionError as exc:
            yield _event("error", {"code": exc.code, "message": exc.message})

    return _sse(events())
