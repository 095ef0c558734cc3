"""Comparing answers: a repeated request gets the same answer, traced anew."""

from __future__ import annotations

from typing import Any


def untraced(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope without ``meta.trace_id``, which names the trace of each asking."""
    meta = {k: v for k, v in envelope["meta"].items() if k != "trace_id"}
    return {**envelope, "meta": meta}
