"""Who may read a session over HTTP: exactly who may call it (the session's own rule,
``workflows/checks.py`` ``check_owner``), so no answer shows a session its caller could not use.

``client.Sandbox`` lets a Sandbox with no user see every session (an operator's view from
Python); a key-less server's callers name no user, so its routes check here: they read sessions
with no owner only, as they may call only those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from client.errors import PermissionDenied
from contract import ErrorCode, SessionView
from http_api.caller import Caller


def may_read(who: Caller, owner: str | None) -> bool:
    """A session with no owner is anyone's; one with an owner is its owner's and admins'."""
    return owner is None or who.admin or owner == who.user_id


def check_read(who: Caller, view: SessionView) -> None:
    """Raise PermissionDenied (403, 4012: the answer a call on the session gets) unless the
    caller may read the session ``view`` shows."""
    if may_read(who, view.user_id):
        return
    caller = f"user {who.user_id!r}" if who.user_id else "a request that names no user"
    raise PermissionDenied(
        ErrorCode.PERMISSION_DENIED,
        f"permission denied: {caller} does not own session {view.workflow_id}",
    )


def readable(who: Caller, sessions: Iterable[Mapping[str, Any]]) -> list[Any]:
    """The sessions of a listing the caller may read."""
    return [s for s in sessions if may_read(who, s.get("user_id"))]


def hide(status: dict[str, Any], resource_types: set[str]) -> dict[str, Any]:
    """A lifecycle status envelope without the sessions of ``resource_types``."""
    data = status.get("data")
    if resource_types and isinstance(data, dict):
        data["active_resources"] = [
            rt for rt in data.get("active_resources", []) if rt not in resource_types
        ]
        data["sessions"] = {
            rt: s for rt, s in (data.get("sessions") or {}).items() if rt not in resource_types
        }
    return status
