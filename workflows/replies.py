"""Answers to signalled requests: a request that carries ``reply_to`` gets its envelope back as
a signal to that workflow, once per request id (a repeated signal is not answered twice)."""

from __future__ import annotations

from temporalio import workflow

from contract import Envelope, ErrorCode, Replyable, SessionReply
from workflows.core import SessionCore


class Replies:
    def __init__(self, core: SessionCore) -> None:
        self.core = core

    async def send(self, request: str, req: Replyable, envelope: Envelope) -> None:
        to = req.reply_to
        request_id = req.request_id or envelope.meta.request_id
        if to is None or not request_id:
            return
        if not self.core.first_reply(f"{request}:{request_id}"):
            return
        reply = SessionReply(request_id=request_id, request=request, envelope=envelope)
        try:
            await workflow.get_external_workflow_handle(to.workflow_id, run_id=to.run_id).signal(
                to.signal, reply
            )
        except Exception as exc:  # the caller is gone: the session goes on
            self.core.record(
                "reply",
                request_id=request_id,
                code=ErrorCode.INTERNAL,
                message=f"could not answer {to.workflow_id}: {exc}"[:500],
            )
