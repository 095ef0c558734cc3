"""The ids a request names, checked before anything reaches Temporal (400 with a reason)."""

from __future__ import annotations

from contract import ErrorCode
from contract.limits import ID_PATTERN
from http_api.answers import ApiError


def checked_worker(worker_id: str | None) -> str:
    """A sandbox id: 1-200 of the id characters (4003 when absent, 4000 when not an id)."""
    if not worker_id:
        raise ApiError(400, ErrorCode.MISSING_FIELD, "worker_id required")
    if not ID_PATTERN.match(worker_id):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"worker_id {worker_id!r} must be 1-200 letters, digits, '.', '_', '@', ':' or '-'",
        )
    return worker_id


def checked_resource(value: str | None, what: str = "resource_type") -> str:
    """A resource type: 1-64 letters, digits, '.', '_' or '-' (4003 when absent)."""
    if not value:
        raise ApiError(400, ErrorCode.MISSING_FIELD, f"worker_id and {what} required")
    if not (len(value) <= 64 and all(c.isalnum() or c in "._-" for c in value)):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"{what} {value[:80]!r} must be 1-64 letters, digits, '.', '_' or '-'",
        )
    return value
