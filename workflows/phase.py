"""The session's state machine: one phase, its allowed moves, and every request's answer in it.

The run loop, every handler and every validator consult this module; nothing else decides what
a session may do. Callers see ``SessionStatus`` (``Lifecycle.status``): the transient DRAINING and
CLOSING phases show as the status the session had before them (or ERROR when it fails).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from contract import SessionStatus


class Phase(StrEnum):
    STARTING = "starting"
    ACTIVE = "active"
    IDLE = "idle"
    PAUSED = "paused"
    #: Continue-as-new is due: in-flight work finishes, new updates are sent to the next run.
    DRAINING = "draining"
    #: The instance is being released; the session ends as ``Lifecycle.outcome``.
    CLOSING = "closing"
    CLOSED = "closed"
    EXPIRED = "expired"
    ERROR = "error"

    @property
    def is_final(self) -> bool:
        return self in FINAL

    @property
    def is_open(self) -> bool:
        """Takes new work: a call, a refresh, a change of state."""
        return self in OPEN


FINAL = frozenset({Phase.CLOSED, Phase.EXPIRED, Phase.ERROR})
OPEN = frozenset({Phase.STARTING, Phase.ACTIVE, Phase.IDLE, Phase.PAUSED})

#: Every allowed move. Continue-as-new leaves from DRAINING; the next run starts in the phase
#: the session drained from.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.ACTIVE, Phase.DRAINING, Phase.CLOSING}),
    Phase.ACTIVE: frozenset({Phase.IDLE, Phase.PAUSED, Phase.DRAINING, Phase.CLOSING}),
    Phase.IDLE: frozenset({Phase.ACTIVE, Phase.PAUSED, Phase.DRAINING, Phase.CLOSING}),
    Phase.PAUSED: frozenset({Phase.ACTIVE, Phase.DRAINING, Phase.CLOSING}),
    Phase.DRAINING: frozenset({Phase.CLOSING}),
    Phase.CLOSING: FINAL,
    Phase.CLOSED: frozenset(),
    Phase.EXPIRED: frozenset(),
    Phase.ERROR: frozenset(),
}


class Request(StrEnum):
    """Every request a session takes, by updates and signals alike."""

    OPEN = "open"
    EXECUTE = "execute"
    REFRESH = "refresh"
    REINITIALIZE = "reinitialize"
    DESTROY = "destroy"
    #: Metadata, rename, state, checkpoints, the log: owner-scoped changes of the record.
    CHANGE = "change"


class Answer(Enum):
    RUN = "run"
    #: The session is moving to its next run: refuse, and the client resends there.
    RETRY = "retry"
    #: The session is closing or closed: 4010.
    CLOSED = "closed"
    #: Nothing to do: a destroy or an open of a closing or closed session answers its view.
    DONE = "done"


def answer(request: Request, phase: Phase, *, signal: bool = False) -> Answer:
    """What a session in ``phase`` does with ``request``; defined for every pair.

    While DRAINING a signal still runs (it cannot be resent: the signal is already in this run's
    history), a destroy completes the close, and any other update is refused for the next run.
    """
    if phase.is_open:
        return Answer.RUN
    if phase is Phase.DRAINING:
        return Answer.RUN if signal or request is Request.DESTROY else Answer.RETRY
    # CLOSING or final: the caller learns the session's end from its view
    if request in (Request.DESTROY, Request.OPEN):
        return Answer.DONE
    return Answer.CLOSED


class InvalidTransition(Exception):
    pass


@dataclass
class Lifecycle:
    """The phase, with what DRAINING and CLOSING need to know: where from, and how it ends."""

    phase: Phase
    #: The phase before DRAINING or CLOSING: what callers see meanwhile, what the next run gets.
    before: Phase | None = None
    #: How a CLOSING session ends: CLOSED, EXPIRED or ERROR.
    outcome: Phase | None = None
    reason: str = ""

    @classmethod
    def resume(cls, status: SessionStatus) -> Lifecycle:
        """The lifecycle of a run that starts (or continues) with this status."""
        return cls(Phase(status.value))

    def can_move(self, to: Phase) -> bool:
        return to in TRANSITIONS[self.phase]

    def move(self, to: Phase) -> None:
        """Move to ``to``; an unlisted move is a bug in the caller."""
        if to is self.phase:
            return
        if not self.can_move(to):
            raise InvalidTransition(f"{self.phase.value} -> {to.value}")
        if to in (Phase.DRAINING, Phase.CLOSING) and self.before is None:
            self.before = self.phase
        self.phase = to

    def close(self, outcome: Phase, reason: str) -> bool:
        """Begin closing (from any open or draining phase); False when already closing."""
        if not self.can_move(Phase.CLOSING):
            return False
        self.move(Phase.CLOSING)
        self.outcome, self.reason = outcome, reason
        return True

    def finish(self) -> None:
        """CLOSING -> its outcome."""
        self.move(self.outcome or Phase.CLOSED)

    @property
    def status(self) -> SessionStatus:
        """The status callers and the search attribute see."""
        phase = self.phase
        if phase is Phase.CLOSING and self.outcome is Phase.ERROR:
            phase = Phase.ERROR
        elif phase in (Phase.DRAINING, Phase.CLOSING):
            phase = self.before or Phase.ACTIVE
        return SessionStatus(phase.value)
