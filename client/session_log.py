"""A session's checkpoints and its log (messages and events), for SessionManager."""

from __future__ import annotations

import json
from typing import Any

from client.errors import SessionError
from client.session_access import SessionAccess
from contract import (
    AppendRequest,
    Checkpoint,
    CheckpointRequest,
    ErrorCode,
    EventsQuery,
    SaveCheckpointRequest,
)


class SessionLog(SessionAccess):
    """Checkpoints (saved data with the resource's snapshot) and the session's log."""

    async def save_checkpoint(
        self, session_id: str, data: Any, *, label: str = "", user_id: str | None = None
    ) -> str:
        """Save ``data`` (JSON) with the resource's latest snapshot; answers the checkpoint id."""
        req = self._request(SaveCheckpointRequest, data=data, label=label, **self._acting(user_id))
        checkpoint = await self._update(session_id, self.workflows.save_checkpoint, req)
        return checkpoint.checkpoint_id

    async def list_checkpoints(
        self, session_id: str, *, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Oldest first, without their data."""
        return [
            c.model_dump(mode="json", exclude={"data", "snapshot"})
            for c in await self._checkpoints(session_id, user_id)
        ]

    async def get_checkpoint(
        self, session_id: str, checkpoint_id: str, *, user_id: str | None = None
    ) -> dict[str, Any] | None:
        for c in await self._checkpoints(session_id, user_id):
            if c.checkpoint_id == checkpoint_id:
                return c.model_dump(mode="json")
        return None

    async def get_latest_checkpoint(
        self, session_id: str, *, user_id: str | None = None
    ) -> dict[str, Any] | None:
        checkpoints = await self._checkpoints(session_id, user_id)
        return checkpoints[-1].model_dump(mode="json") if checkpoints else None

    async def delete_checkpoint(
        self, session_id: str, checkpoint_id: str, *, user_id: str | None = None
    ) -> bool:
        req = self._request(CheckpointRequest, checkpoint_id=checkpoint_id, **self._acting(user_id))
        return bool(await self._update(session_id, self.workflows.delete_checkpoints, req))

    async def clear_checkpoints(self, session_id: str, *, user_id: str | None = None) -> int:
        req = self._request(CheckpointRequest, **self._acting(user_id))
        return await self._update(session_id, self.workflows.delete_checkpoints, req)

    async def add_message(
        self, session_id: str, role: str, content: Any, *, user_id: str | None = None
    ) -> dict[str, Any]:
        """Append a chat message (role: user, assistant, system or tool) to the session's log."""
        req = self._request(AppendRequest, role=role, content=content, **self._acting(user_id))
        event = await self._update(session_id, self.workflows.append, req)
        return event.model_dump(mode="json")

    async def add_event(
        self,
        session_id: str,
        kind: str,
        content: Any = None,
        *,
        message: str = "",
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Append an event of the caller's own kind to the session's log."""
        if kind == "message":
            raise SessionError(ErrorCode.INVALID_INPUT, "use add_message for messages")
        req = self._request(
            AppendRequest,
            kind=kind,
            content=content,
            message=message,
            **self._acting(user_id),
        )
        event = await self._update(session_id, self.workflows.append, req)
        return event.model_dump(mode="json")

    async def search_events(
        self,
        session_id: str,
        *,
        start_id: int | None = None,
        end_id: int | None = None,
        reverse: bool = False,
        kind: str | None = None,
        limit: int = 20,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """A page of the log: ids in [start_id, end_id], one kind, at most ``limit`` (<= 100)."""
        query = self._request(
            EventsQuery, start_id=start_id, end_id=end_id, reverse=reverse, kind=kind, limit=limit
        )
        if start_id is not None and end_id is not None and end_id < start_id:
            raise SessionError(
                ErrorCode.INVALID_INPUT, f"end_id {end_id} is before start_id {start_id}"
            )
        await self._require(session_id, user_id)
        page = await self.workflows.events(session_id, query)
        return page.model_dump(mode="json")

    async def get_chat_history(
        self, session_id: str, last_n: int | None = None, *, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The session's messages, oldest first (the last ``last_n`` when given)."""
        if last_n is not None and last_n < 1:
            raise SessionError(ErrorCode.INVALID_INPUT, f"last_n must be >= 1, not {last_n}")
        events = await self._all_events(session_id, user_id, kind="message")
        if last_n is not None:
            events = events[-last_n:]
        return [
            {"id": e["id"], "at": e["at"], "role": e["role"], "content": e["content"]}
            for e in events
        ]

    async def export_history(self, session_id: str, *, user_id: str | None = None) -> str:
        """The session's whole retained log as JSON lines, oldest first."""
        events = await self._all_events(session_id, user_id)
        return "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)

    async def _checkpoints(self, session_id: str, user_id: str | None) -> list[Checkpoint]:
        await self._require(session_id, user_id)
        return await self.workflows.checkpoints(session_id)

    async def _all_events(
        self, session_id: str, user_id: str | None, *, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Page through the log, 100 at a time (queries stay small)."""
        events: list[dict[str, Any]] = []
        start: int | None = None
        while True:
            page = await self.search_events(
                session_id, start_id=start, kind=kind, limit=100, user_id=user_id
            )
            events.extend(page["events"])
            if not page["has_more"]:
                return events
            start = page["events"][-1]["id"] + 1
