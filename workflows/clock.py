"""The session's clock: the TTL deadline, the idle timer, and a timer that can be moved.

Like samples-python's ``UpdatableTimer``: the deadline is an absolute time in the carried state;
the run loop sleeps until it, and any request that moves it earlier wakes the sleeper.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

from contract import CarriedState, SessionInput


class Clock:
    def __init__(self, inp: SessionInput, state: CarriedState) -> None:
        self._input = inp
        self._state = state
        self._woken = False

    @property
    def deadline(self) -> datetime:
        if self._state.deadline is None:
            self.move_deadline()
        assert self._state.deadline is not None
        return self._state.deadline

    def start(self) -> None:
        """A new session: its clock starts now."""
        if self._state.created_at is None:
            self._state.created_at = workflow.now()
            self.move_deadline()

    def move_deadline(self, seconds: float | None = None) -> None:
        """Deadline = now + ``seconds`` (the TTL by default); wakes the sleeper if it is sooner."""
        before = self._state.deadline
        ttl = self._input.ttl_seconds if seconds is None else seconds
        self._state.deadline = workflow.now() + timedelta(seconds=ttl)
        if before is not None and self._state.deadline < before:
            self.wake()

    def touch(self) -> None:
        """Something happened: the idle timer starts again."""
        self._state.last_activity = workflow.now()

    def remaining(self) -> float:
        return (self.deadline - workflow.now()).total_seconds()

    def idle_in(self) -> float | None:
        """Seconds until the session turns IDLE; None when it has no idle timer."""
        return self.quiet_for(self._input.idle_seconds)

    def quiet_for(self, idle: float | None) -> float | None:
        """Seconds until the session has been quiet ``idle`` seconds; None for None."""
        if idle is None:
            return None
        since = self._state.last_activity or self._state.created_at or workflow.now()
        return idle - (workflow.now() - since).total_seconds()

    def wake(self) -> None:
        """A timer the sleeper set is no longer right: make it look again."""
        self._woken = True

    async def sleep(self, seconds: float, stop: Callable[[], bool], summary: str) -> bool:
        """Sleep ``seconds`` or until ``stop()`` or ``wake()``; True when the time ran out.
        ``summary`` names the timer in the UI."""
        self._woken = False
        try:
            await workflow.wait_condition(
                lambda: self._woken or stop(), timeout=seconds, timeout_summary=summary
            )
        except builtins.TimeoutError:
            return True
        return False
