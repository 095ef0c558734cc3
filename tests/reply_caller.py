"""A caller workflow for tests/test_reply_to.py: it uses a session through signals only."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract import Envelope, ExecuteRequest
    from workflows.session_caller import SessionCaller

CALLER_QUEUE = "reply-callers"


@workflow.defn
class ReplyCaller(SessionCaller):
    def __init__(self) -> None:
        self._go = False

    @workflow.signal
    def go(self) -> None:
        self._go = True

    @workflow.run
    async def run(self, session_workflow_id: str) -> list[Envelope]:
        first = await self.call_session(
            session_workflow_id,
            ExecuteRequest(tool="bash:run", params={"command": "cd /tmp && echo one >> log"}),
        )
        await workflow.wait_condition(lambda: self._go)
        second = await self.call_session(
            session_workflow_id,
            ExecuteRequest(tool="bash:run", params={"command": "sleep 2; pwd; wc -l < log"}),
            timeout=timedelta(minutes=2),
        )
        return [first, second]
