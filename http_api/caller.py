"""Who sent a request, as its API key says (never as the request says)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from http_api.keys import ApiKey


@dataclass(frozen=True)
class Caller:
    """Who sent a request: from the API key, never from the request."""

    user_id: str | None
    admin: bool = False
    key: ApiKey | None = None


#: The caller of a server with no keys: every local caller, trusted, naming no user.
LOCAL = Caller(user_id=None)


def own_request_id(who: Caller, request_id: Any) -> str | None:
    """A caller's request id, made the key's user's own: an update id names one answer in a
    workflow, so another user's id must never reach it (a shared-tools workflow or a temporary
    session is not guarded by an owner)."""
    if not request_id:
        return None
    request_id = str(request_id)
    if who.user_id is None:
        return request_id
    prefix = f"{who.user_id}/"
    return request_id if request_id.startswith(prefix) else prefix + request_id
