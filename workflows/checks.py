"""Pure checks of a request against the session: raise ``Rejected`` with a code a caller reads.

Validators call them so a bad update never reaches history; signal handlers call the same ones
and record a refusal instead; handlers call them again once the instance (and its tool catalog)
exists.
"""

from __future__ import annotations

from typing import Any

from contract import (
    AppendRequest,
    CarriedState,
    Checkpoint,
    ErrorCode,
    ExecuteRequest,
    InstanceInfo,
    OwnedRequest,
    split_tool_name,
)
from contract.limits import (
    MAX_CHECKPOINT_BYTES,
    MAX_CHECKPOINTS,
    MAX_ENTRY_BYTES,
    MAX_METADATA_BYTES,
    json_size,
    timeout_problem,
)
from workflows.failures import Rejected
from workflows.params_check import check_params

ROLES = frozenset({"user", "assistant", "system", "tool"})


def check_owner(req: OwnedRequest, owner: str | None, workflow_id: str) -> None:
    """A session with an owner takes requests from that user or an administrator only."""
    if owner is None or req.admin or req.user_id == owner:
        return
    who = f"user {req.user_id!r}" if req.user_id else "a request that names no user"
    raise Rejected(
        ErrorCode.PERMISSION_DENIED,
        f"permission denied: {who} does not own session {workflow_id}",
    )


def check_call(
    req: ExecuteRequest,
    resource_type: str,
    instance: InstanceInfo | None,
    workflow_id: str,
    *,
    strict: bool | None = None,
) -> None:
    """The tool belongs to this session, its parameters fit its schema and their bounds.
    Undeclared parameters are refused when ``strict`` (default: the request's
    ``strict_params``)."""
    if not resource_type:
        raise Rejected(
            ErrorCode.NO_SESSION,
            f"session {workflow_id} has no resource to run {req.tool!r} on "
            "(it is a conversation record)",
        )
    try:
        resource, _ = split_tool_name(req.tool)
    except ValueError as exc:
        raise Rejected(ErrorCode.UNKNOWN_TOOL, str(exc)) from None
    if resource != resource_type:
        raise Rejected(ErrorCode.UNKNOWN_TOOL, f"tool {req.tool!r} is not a {resource_type} tool")
    timeout = timeout_problem(req.params)
    if timeout is not None:
        raise Rejected(timeout[0], f"{req.tool}: {timeout[1]}")
    if req.session_id is not None and (instance is None or instance.session_id != req.session_id):
        current = instance.session_id if instance else "none"
        raise Rejected(
            ErrorCode.NO_SESSION,
            f"no session {req.session_id!r} in {workflow_id} (current: {current})",
        )
    if instance is None or not instance.tools:
        return  # the catalog is known once an instance exists
    spec = next((t for t in instance.tools if t.name == req.tool), None)
    if spec is None:
        known = ", ".join(t.name for t in instance.tools)
        raise Rejected(ErrorCode.UNKNOWN_TOOL, f"unknown tool {req.tool!r} (available: {known})")
    strict = req.strict_params if strict is None else strict
    problem_code = check_params(req.tool, spec.params_schema, req.params, strict=strict)
    if problem_code is not None:
        raise Rejected(*problem_code)


def check_entry(req: AppendRequest) -> None:
    if req.kind == "message" and req.role not in ROLES:
        raise Rejected(
            ErrorCode.INVALID_INPUT,
            f"a message needs a role, one of {', '.join(sorted(ROLES))} (got {req.role!r})",
        )
    size = json_size(req.content)
    if size > MAX_ENTRY_BYTES:
        raise Rejected(
            ErrorCode.TOO_LARGE,
            f"log entry content is {size} bytes; the limit is {MAX_ENTRY_BYTES} bytes",
        )


def merged_metadata(
    current: dict[str, Any], change: dict[str, Any], *, replace: bool
) -> dict[str, Any]:
    """The metadata after a change (a None value removes a key), within the total budget."""
    merged = {} if replace else dict(current)
    merged.update(change)
    result = {k: v for k, v in merged.items() if v is not None}
    size = json_size(result)
    if size > MAX_METADATA_BYTES:
        raise Rejected(
            ErrorCode.TOO_LARGE,
            f"metadata would be {size} bytes in all; the limit is {MAX_METADATA_BYTES} bytes",
        )
    return result


def check_new_checkpoint(state: CarriedState, data: Any) -> None:
    size = json_size(data)
    if size > MAX_CHECKPOINT_BYTES:
        raise Rejected(
            ErrorCode.TOO_LARGE,
            f"checkpoint data is {size} bytes; the limit is {MAX_CHECKPOINT_BYTES} bytes",
        )
    if len(state.checkpoints) >= MAX_CHECKPOINTS:
        raise Rejected(
            ErrorCode.QUOTA_EXCEEDED,
            f"session has {MAX_CHECKPOINTS} checkpoints, the most it keeps; "
            "delete one or clear them first",
        )


def find_checkpoint(state: CarriedState, checkpoint_id: str, workflow_id: str) -> Checkpoint:
    for checkpoint in state.checkpoints:
        if checkpoint.checkpoint_id == checkpoint_id:
            return checkpoint
    raise Rejected(ErrorCode.NOT_FOUND, f"no checkpoint {checkpoint_id!r} in session {workflow_id}")
