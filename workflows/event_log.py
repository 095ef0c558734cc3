"""The session's event log: bounded in entries and bytes, searchable by id range and kind."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contract import CarriedState, EventsPage, EventsQuery, SessionEvent
from contract.limits import MAX_EVENTS, MAX_LOG_BYTES, json_size


def entry_size(event: SessionEvent) -> int:
    """What an entry costs in the log's budget: every caller-supplied string and the content."""
    size = sum(
        len(text.encode())
        for text in (event.kind, event.message, event.role, event.tool, event.request_id)
    )
    return size + (json_size(event.content) if event.content is not None else 0)


class EventLog:
    """Appends to ``state.events``; the oldest entries leave it past ``MAX_EVENTS`` entries or
    ``MAX_LOG_BYTES`` bytes (they stay in the Temporal history of the run that recorded them, as
    the request that made them)."""

    def __init__(self, state: CarriedState) -> None:
        self._state = state
        self._sizes = [entry_size(e) for e in state.events]

    def record(self, at: datetime, kind: str, **fields: Any) -> SessionEvent:
        state = self._state
        event = SessionEvent(id=state.next_event_id, at=at, kind=kind, **fields)
        state.next_event_id += 1
        state.events.append(event)
        self._sizes.append(entry_size(event))
        self._trim()
        return event

    def _trim(self) -> None:
        events = self._state.events
        excess = max(0, len(events) - MAX_EVENTS)
        kept = sum(self._sizes[excess:])
        while kept > MAX_LOG_BYTES and excess < len(self._sizes) - 1:
            kept -= self._sizes[excess]
            excess += 1
        if excess:
            del events[:excess]
            del self._sizes[:excess]
            self._state.dropped_events += excess

    @property
    def bytes(self) -> int:
        return sum(self._sizes)

    def page(self, q: EventsQuery) -> EventsPage:
        selected = [
            e
            for e in self._state.events
            if (q.start_id is None or e.id >= q.start_id)
            and (q.end_id is None or e.id <= q.end_id)
            and (q.kind is None or e.kind == q.kind)
        ]
        if q.reverse:
            selected.reverse()
        return EventsPage(
            events=selected[: q.limit],
            has_more=len(selected) > q.limit,
            dropped=self._state.dropped_events,
        )
