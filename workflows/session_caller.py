"""SessionCaller: the calling side, for other workflows that call a session by signal.

A workflow cannot send another workflow an update; it can signal it. Mix ``SessionCaller`` into
your workflow class: ``call_session`` signals the request with ``reply_to`` pointing back here,
and waits (deterministically, with a timeout) for the session's ``session_reply`` signal. The
request id is made once and kept in history, so a replayed or restarted caller never sends a
second request, and the session answers each request id once.

    @workflow.defn
    class MyAgent(SessionCaller):
        @workflow.run
        async def run(self) -> str:
            envelope = await self.call_session(
                "my-sandbox:bash", ExecuteRequest(tool="bash:run", params={"command": "ls"})
            )
            return envelope.data["stdout"]
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contract import Envelope, Replyable, ReplyTo, SessionReply

R = TypeVar("R", bound=Replyable)
REPLY_SIGNAL = "session_reply"


class SessionCaller:
    """A mixin for workflows that call sessions: the reply signal and ``call_session``."""

    @workflow.signal(name=REPLY_SIGNAL)
    def session_reply(self, reply: SessionReply) -> None:
        self._session_replies()[reply.request_id] = reply

    def _session_replies(self) -> dict[str, SessionReply]:
        # A mixin has no __init__ of its own to rely on.
        replies: dict[str, SessionReply] = self.__dict__.setdefault("_replies_by_request", {})
        return replies

    async def call_session(
        self,
        session_workflow_id: str,
        req: R,
        *,
        request: str = "execute",
        timeout: timedelta = timedelta(minutes=10),
    ) -> Envelope:
        """Signal ``request`` (execute, refresh, reinitialize or destroy) to the session and
        wait for its answer; raises ``asyncio.TimeoutError`` after ``timeout``."""
        request_id = req.request_id or str(workflow.uuid4())
        sent = req.model_copy(
            update={
                "request_id": request_id,
                "reply_to": ReplyTo(workflow_id=workflow.info().workflow_id, signal=REPLY_SIGNAL),
            }
        )
        await workflow.get_external_workflow_handle(session_workflow_id).signal(request, sent)
        replies = self._session_replies()
        await workflow.wait_condition(lambda: request_id in replies, timeout=timeout)
        return replies.pop(request_id).envelope
