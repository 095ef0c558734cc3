"""The worker's table of the calls it ran, by request id: a call runs at most once here.

Temporal can hand a worker the same call again: a workflow task that ran a local activity and was
then dropped (the server lost it, crashed, or aborted the updates it carried) is replayed without
the activity's result, so the activity runs again; an update aborted that way is re-sent by the
client with the same id. The workflow's own table of answers (``recent_results``) only holds what
reached history. This one holds what ran: a repeat of a running call joins it, a repeat of a
finished one gets its recorded outcome. It lives as long as the worker, which is also how long
the instances it holds live.

Calls on one instance also run one at a time here. The session already sends them one at a time,
but a call orphaned by a dropped task (still running, its answer not in history) must not share
the instance with the next call the replayed session sends: that one waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from contract import ToolOutcome
from contract.limits import json_size

#: Finished calls kept (the oldest go first), and for how long: a repeat comes within the
#: workflow task timeout of its first run, or after a server restart, so minutes are plenty.
MAX_FINISHED = 2048
KEEP_SECONDS = 900.0
#: Outcomes larger than this (encoded data) are kept without their data, so the table stays
#: bounded: a repeat of such a call gets its code and a note, never a second run.
MAX_KEPT_BYTES = 256 * 1024


class CallLedger:
    """Running and recently finished calls, keyed by (instance, request id)."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], asyncio.Task[ToolOutcome]] = {}
        self._turns: dict[str, asyncio.Lock] = {}
        self._finished: OrderedDict[tuple[str, str], tuple[float, ToolOutcome]] = OrderedDict()
        #: How many calls were answered from this table instead of running (a worker metric).
        self.repeats = 0

    async def run_once(
        self,
        instance: str,
        request_id: str,
        call: Callable[[], Awaitable[ToolOutcome]],
        *,
        one_at_a_time: bool = True,
    ) -> ToolOutcome:
        """``call()``'s outcome, run once for this key: a repeat joins it or reads its outcome.
        With ``one_at_a_time``, calls on the same instance run one after another.

        The call runs in a task of its own, so a caller that is cancelled (its workflow task was
        dropped) leaves it running for the repeat to join instead of starting it again.
        """
        key = (instance, request_id)
        self._forget_old()
        done = self._finished.get(key)
        if done is not None:
            self.repeats += 1
            return done[1].model_copy(deep=True)
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._in_turn(instance, call) if one_at_a_time else call())
            self._running[key] = task
            task.add_done_callback(lambda t: self._record(key, t))
        else:
            self.repeats += 1
        return (await asyncio.shield(task)).model_copy(deep=True)

    def forget(self, instance: str) -> None:
        """An instance is gone: its calls cannot be repeated on it."""
        self._turns.pop(instance, None)
        for key in [k for k in self._finished if k[0] == instance]:
            del self._finished[key]

    async def _in_turn(
        self, instance: str, call: Callable[[], Awaitable[ToolOutcome]]
    ) -> ToolOutcome:
        async with self._turns.setdefault(instance, asyncio.Lock()):
            return await call()

    def _record(self, key: tuple[str, str], task: asyncio.Task[ToolOutcome]) -> None:
        self._running.pop(key, None)
        if task.cancelled() or task.exception() is not None:
            return  # nothing ran to the end: a repeat may run it
        self._finished[key] = (time.monotonic(), _bounded(task.result()))
        while len(self._finished) > MAX_FINISHED:
            self._finished.popitem(last=False)

    def _forget_old(self) -> None:
        horizon = time.monotonic() - KEEP_SECONDS
        while self._finished and next(iter(self._finished.values()))[0] < horizon:
            self._finished.popitem(last=False)


def _bounded(outcome: ToolOutcome) -> ToolOutcome:
    if outcome.data is None or json_size(outcome.data) <= MAX_KEPT_BYTES:
        return outcome
    return outcome.model_copy(
        update={
            "data": None,
            "message": f"{outcome.message} (this call already ran; its large result is not kept "
            "for repeats: run a new request to read it again)".strip(),
        }
    )
