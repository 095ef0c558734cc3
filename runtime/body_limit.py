"""An ASGI middleware that answers a request body over a size limit with a 413 the client reads.

A server that answers early and closes with bytes of the body still unread makes the kernel reset
the connection, and a client that sends its whole body before reading the answer (urllib,
requests) then sees "connection reset" instead of the 413. So an oversized body is read to its
end (up to a bound) and dropped before the answer; only a body that announces it waits for
``100 Continue`` is answered at once, since its client sends nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ASGI's types, spelled out here so that this module needs no web framework.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
App = Callable[[Scope, Receive, Send], Any]

#: How much of an oversized body is read and dropped before answering; past it the connection
#: is closed with the answer (the client may then see a reset: it sent far too much).
DRAIN_BYTES = 64 * 1024 * 1024


class BodyLimit:
    """Answers 413 with ``answer(limit)`` (a JSON body) for a request body over ``limit`` bytes;
    smaller bodies reach ``app`` unchanged (read whole first, then replayed)."""

    def __init__(self, app: App, limit: int, answer: Callable[[int], bytes]) -> None:
        self.app = app
        self.limit = limit
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await _drain(receive)
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left mid-body: no one to answer
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                if message.get("more_body", False):
                    await _drain(receive)
                await self._too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            if pending:
                return pending.pop()
            message: Message = await receive()  # after the body: the disconnect
            return message

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        raw = self.answer(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})


async def _drain(receive: Receive) -> None:
    """Read the rest of the body (at most DRAIN_BYTES) and drop it."""
    dropped = 0
    while dropped <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
