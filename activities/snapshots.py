"""The snapshot activity: a held instance's state now, between calls (a fork's source, or an
idle session about to be suspended). Its own class so it needs only the instance registry."""

from __future__ import annotations

import logging

from temporalio import activity

from activities.instances import InstanceRegistry
from contract import CleanupInput, ErrorCode, ToolOutcome
from contract.activities import SNAPSHOT

log = logging.getLogger(__name__)


class SnapshotActivity:
    def __init__(self, registry: InstanceRegistry) -> None:
        self.registry = registry

    @activity.defn(name=SNAPSHOT)
    async def snapshot(self, inp: CleanupInput) -> ToolOutcome:
        instance = self.registry.get(inp.session_id)
        if instance is None:
            return ToolOutcome(
                code=ErrorCode.RESOURCE_LOST,
                message=f"instance {inp.session_id} is not held by this worker",
                held_elsewhere=activity.info().is_local,
            )
        try:
            state = await instance.backend.snapshot(instance.session_info)
        except Exception as exc:  # the session keeps the snapshot of its last call
            log.exception("snapshot of %s failed", inp.session_id)
            return ToolOutcome(code=ErrorCode.INTERNAL, message=f"snapshot failed: {exc}")
        return ToolOutcome(snapshot=state)
