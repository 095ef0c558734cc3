"""Live output: what a streaming call prints while it runs, as the session's stream carries it.

A call sent with ``stream: true`` publishes its output, batched, to its session workflow's stream
(``temporalio.contrib.workflow_streams``) on the topic :func:`output_topic` of its request id; the
session adds an ``end`` chunk once the call is answered. Any client reads the stream by workflow id
from an offset: the caller's iterator, a watcher that resumes where it left off, a UI.

The bounds below keep a session's history and carried state small however much a call prints.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

#: The topic prefix of one call's chunks (``call:<request_id>``).
OUTPUT_TOPIC_PREFIX = "call:"

#: One publish batch per call at most this often: (batches so far below, seconds between two).
#: The first batch of a quiet spell goes at once; a chatty call is batched ever more coarsely.
BATCH_SPACING: tuple[tuple[int, float], ...] = ((50, 0.1), (150, 0.5), (300, 2.0))
#: A call publishes at most this many batches (each a signal, and a poll per watcher): past it
#: its output comes with its answer only, and a ``note`` chunk says so.
MAX_BATCHES_PER_CALL = BATCH_SPACING[-1][0]
#: A chunk carries at most this many characters; a bigger batch is split.
MAX_CHUNK_CHARS = 64 * 1024
#: The stream keeps its newest items up to these bounds (encoded bytes, items), when a streaming
#: call ends and across continue-as-new; a watcher asking for an older offset starts at the oldest
#: one kept. What a call printed is in its answer in full (up to the tool's own output cap).
RETAINED_BYTES = 256 * 1024
RETAINED_ITEMS = 1000


def output_topic(request_id: str) -> str:
    """The stream topic of one call's output."""
    return f"{OUTPUT_TOPIC_PREFIX}{request_id}"


def batch_spacing(batches: int) -> float | None:
    """Seconds between a call's batches after ``batches`` of them; None: it may publish no more."""
    for below, seconds in BATCH_SPACING:
        if batches < below:
            return seconds
    return None


class OutputChunk(BaseModel):
    """A piece of a streaming call's output, a note about it, or its end."""

    # Unknown fields are ignored, so an older reader can read a newer writer's chunk.
    model_config = ConfigDict(extra="ignore")

    request_id: str
    #: ``output`` (text), ``note`` (about the live output, not part of it) or ``end`` (the call
    #: was answered: ``code`` and ``message``; its envelope is the call's answer).
    kind: Literal["output", "note", "end"] = "output"
    #: ``stdout``, ``stderr``, or ``output`` (a tool whose streams are not told apart).
    stream: str = "stdout"
    text: str = ""
    #: When the worker read the chunk's first bytes (or the session ended the call), UTC.
    at: datetime | None = None
    code: int | None = None
    message: str = ""
    #: Its place in the session's stream, set by the reader: a watcher resumes from offset + 1.
    offset: int = 0
