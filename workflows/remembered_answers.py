"""Answers kept by request id, so a repeated request is answered, not run again."""

from __future__ import annotations

from contract import Envelope
from contract.limits import MAX_REMEMBERED_DATA_BYTES, MAX_REMEMBERED_RESULTS, json_size


def remember(results: dict[str, Envelope], request_id: str, envelope: Envelope) -> None:
    """Keep a request's answer, so a retry is answered, not run; the oldest answers go first.

    A large answer (a file read, say) is kept without its data, so the session's memory and its
    carried state stay bounded: a retry gets its code and a note, not the bytes again.
    """
    size = json_size(envelope.data)
    if size > MAX_REMEMBERED_DATA_BYTES:
        envelope = envelope.model_copy(
            update={
                "data": None,
                "message": f"{envelope.message} (answered before; its data, {size} bytes, "
                "is not kept for repeats: run a new request to read it again)",
            }
        )
    results[request_id] = envelope
    while len(results) > MAX_REMEMBERED_RESULTS:
        results.pop(next(iter(results)))
