"""Live output, read from a session's stream: any watcher by session id from an offset, and the
caller's own view of one call (its chunks, then its answer).

Reading is long-polling (``temporalio.contrib.workflow_streams``): a watcher costs nothing while
the session is quiet, follows it across continue-as-new, and ends once the session has closed and
what it kept was read. Each waiting watcher holds one of the server's in-flight updates of the
session (10 by default, shared with calls), so a session lets 5 wait at once and refuses the
next (``QuotaExceeded``); a poll with nothing new answers empty after 15 s and polls again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from client.errors import SessionError
from contract import ErrorCode, OutputChunk, output_topic

log = logging.getLogger(__name__)

#: How long a call's iterator waits, after the answer came, for the call's end mark (it is
#: already in the stream by then; this only bounds a reader that cannot reach it).
REST_TIMEOUT = 10.0


async def watch_output(
    client: Client,
    session_id: str,
    from_offset: int = 0,
    *,
    request_id: str | None = None,
) -> AsyncGenerator[OutputChunk, None]:
    """What a session's streaming calls print (or one call's: ``request_id``), from
    ``from_offset`` on, as it arrives. ``session_id`` is the session's workflow id.

    Each chunk carries its ``offset``: a watcher that stops resumes from the last one + 1. An
    offset older than the session keeps starts at the oldest chunk kept (its ``offset`` says
    where). ``end`` chunks mark a call answered. Ends when the session has closed. A refused
    watch raises ``SessionError`` (an offset past the end, too many watchers waiting).
    """
    if isinstance(from_offset, bool) or not isinstance(from_offset, int) or from_offset < 0:
        raise SessionError(
            ErrorCode.INVALID_INPUT, f"from_offset must be a whole number >= 0, not {from_offset!r}"
        )
    stream = WorkflowStreamClient.create(client, session_id)
    topics = [output_topic(request_id)] if request_id else None
    items = stream.subscribe(topics, from_offset, result_type=OutputChunk)
    try:
        async for item in items:
            yield item.data.model_copy(update={"offset": item.offset})
    except WorkflowUpdateFailedError as exc:
        raise SessionError.of(exc) from None
    finally:
        if isinstance(items, AsyncGenerator):  # end its poll now, not when it is collected
            await items.aclose()


async def follow_call(
    client: Client,
    session_id: str | None,
    request_id: str,
    answer: asyncio.Future[dict[str, Any]],
) -> AsyncIterator[OutputChunk | dict[str, Any]]:
    """The chunks call ``request_id`` publishes to session ``session_id`` while it runs, then its
    answer (``answer``, the envelope dict of the call in flight).

    The output is what the session's stream carries; without it (no session, an older worker, a
    call answered by a temporary session) the answer alone comes, as from ``execute``.
    """
    try:
        if session_id is not None:
            async for chunk in _chunks_until_answered(client, session_id, request_id, answer):
                yield chunk
        yield await answer
    finally:
        if not answer.done():  # the caller stopped reading: stop waiting (the call goes on)
            answer.cancel()
            with contextlib.suppress(BaseException):
                await answer


async def _chunks_until_answered(
    client: Client, session_id: str, request_id: str, answer: asyncio.Future[dict[str, Any]]
) -> AsyncIterator[OutputChunk]:
    chunks = watch_output(client, session_id, request_id=request_id)
    waiting: asyncio.Future[OutputChunk] | None = None
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    try:
        while True:
            if waiting is None:
                waiting = asyncio.ensure_future(anext(chunks))
            if deadline is None:
                both: set[asyncio.Future[Any]] = {waiting, answer}
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.wait({waiting}, timeout=max(0.0, deadline - loop.time()))
            if waiting.done():
                read, waiting = waiting, None
                try:
                    chunk = read.result()
                except StopAsyncIteration:
                    return  # the session closed and everything it kept was read
                except Exception as exc:  # no stream to read: the answer still comes
                    log.info("no live output from %s: %s", session_id, exc)
                    return
                if chunk.kind == "end":
                    return
                yield chunk
            elif deadline is not None:
                return  # answered, and its end mark did not come in time
            elif not _marked_here(answer, session_id):
                return  # refused before it ran, or answered by another (temporary) session
            else:
                # The end mark went into the stream with the answer: read up to it.
                deadline = loop.time() + REST_TIMEOUT
    finally:
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting
        await chunks.aclose()


def _marked_here(answer: asyncio.Future[dict[str, Any]], session_id: str) -> bool:
    """Did session ``session_id`` answer the call (and so mark its end in its stream)?"""
    if answer.cancelled() or answer.exception() is not None:
        return False
    meta = answer.result().get("meta") or {}
    return bool(meta.get("workflow_id") == session_id)
