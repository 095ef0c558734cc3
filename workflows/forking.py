"""A fork: what a session's children start from, answered to the client that starts them.

The parent does not start its children: the client names them (``ForkRequest.children``) and
starts each as a session of its own, with the parent's input, the snapshot answered here as its
``restore`` and the parent's id as its ``parent_session``. The parent takes a fresh snapshot first
(what background processes wrote since the last call is in) and records the fork in its log.
"""

from __future__ import annotations

from temporalio import workflow

from contract import ErrorCode, ForkRequest, ForkSource
from workflows.checks import find_checkpoint
from workflows.core import SessionCore
from workflows.failures import Rejected
from workflows.phase import Phase, Request


def check_fork(core: SessionCore, req: ForkRequest) -> None:
    """The validator's checks: owner, an open session with a resource, a known checkpoint."""
    core.admit(Request.CHANGE, req)
    core.reject_if_temporary("forked")
    if not core.input.resource_type:
        raise Rejected(
            ErrorCode.INVALID_INPUT, f"session {core.id} has no resource to fork (a record)"
        )
    if req.from_checkpoint is not None:
        find_checkpoint(core.state, req.from_checkpoint, core.id)


async def fork(core: SessionCore, req: ForkRequest) -> ForkSource:
    """The parent's state for ``req.children``: a checkpoint's snapshot, or a fresh one."""
    await workflow.wait_condition(lambda: core.phase is not Phase.STARTING)
    async with core.lock:
        if not core.phase.is_open:  # closed while waiting for the lock
            raise Rejected(ErrorCode.SESSION_CLOSED, f"session {core.id} is closing")
        if req.from_checkpoint is not None:
            snapshot = find_checkpoint(core.state, req.from_checkpoint, core.id).snapshot
        else:
            await core.fresh_snapshot()
            snapshot = core.state.snapshot
        core.touch()
        source = f" from checkpoint {req.from_checkpoint}" if req.from_checkpoint else ""
        shown = ", ".join(req.children[:4]) + (", ..." if len(req.children) > 4 else "")
        core.record("fork", message=f"into {len(req.children)}{source}: {shown}")
        state = core.state
        return ForkSource(
            parent=core.id,
            input=core.input.model_copy(
                update={
                    "carried": None,
                    "restore": None,
                    "opened_by": "",
                    "config": state.config,
                    "name": state.name,
                    "metadata": state.metadata,
                }
            ),
            snapshot=snapshot,
        )
