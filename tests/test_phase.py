"""The session's state machine, its event log and its bounds, tested in-process (no server)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contract import AppendRequest, CarriedState, ExecuteRequest, SessionStatus
from contract.limits import MAX_LOG_BYTES, MAX_METADATA_BYTES, tool_timeout
from workflows.checks import check_call, check_entry, check_owner, merged_metadata
from workflows.event_log import EventLog
from workflows.failures import Rejected
from workflows.phase import (
    FINAL,
    OPEN,
    TRANSITIONS,
    Answer,
    InvalidTransition,
    Lifecycle,
    Phase,
    Request,
    answer,
)


def test_every_phase_has_its_transitions_and_final_phases_have_none() -> None:
    assert set(TRANSITIONS) == set(Phase)
    for phase in FINAL:
        assert TRANSITIONS[phase] == frozenset()
    # Every phase can reach a final phase: no session is stuck.
    for phase in Phase:
        seen, todo = {phase}, [phase]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & FINAL, phase


def test_only_closing_reaches_a_final_phase() -> None:
    for phase, targets in TRANSITIONS.items():
        if targets & FINAL:
            assert phase is Phase.CLOSING


def test_an_unlisted_move_raises() -> None:
    life = Lifecycle(Phase.CLOSED)
    with pytest.raises(InvalidTransition):
        life.move(Phase.ACTIVE)
    life = Lifecycle(Phase.DRAINING, before=Phase.ACTIVE)
    with pytest.raises(InvalidTransition):
        life.move(Phase.ACTIVE)


@pytest.mark.parametrize("request_kind", list(Request))
@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("signal", [False, True])
def test_every_request_has_an_answer_in_every_phase(
    request_kind: Request, phase: Phase, signal: bool
) -> None:
    verdict = answer(request_kind, phase, signal=signal)
    if phase in OPEN:
        assert verdict is Answer.RUN
    elif phase is Phase.DRAINING:
        expected = Answer.RUN if signal or request_kind is Request.DESTROY else Answer.RETRY
        assert verdict is expected
    elif request_kind in (Request.DESTROY, Request.OPEN):
        assert verdict is Answer.DONE  # answers the view; never waits for what cannot come
    else:
        assert verdict is Answer.CLOSED


def test_destroy_while_draining_completes_the_close() -> None:
    life = Lifecycle(Phase.ACTIVE)
    life.move(Phase.DRAINING)
    assert life.status is SessionStatus.ACTIVE  # callers see where it drains from
    assert answer(Request.DESTROY, life.phase) is Answer.RUN
    assert life.close(Phase.CLOSED, "destroyed")
    assert life.phase is Phase.CLOSING and life.status is SessionStatus.ACTIVE
    life.finish()
    assert life.phase is Phase.CLOSED and life.status is SessionStatus.CLOSED
    assert not life.close(Phase.CLOSED, "again")  # a second destroy changes nothing


def test_a_failed_session_shows_error_while_it_closes() -> None:
    life = Lifecycle(Phase.STARTING)
    life.close(Phase.ERROR, "initialize failed")
    assert life.status is SessionStatus.ERROR
    life.finish()
    assert life.phase is Phase.ERROR


def test_continue_as_new_resumes_the_phase_it_drained_from() -> None:
    life = Lifecycle(Phase.PAUSED)
    life.move(Phase.DRAINING)
    assert Lifecycle.resume(life.status).phase is Phase.PAUSED


def _log() -> tuple[CarriedState, EventLog]:
    state = CarriedState()
    return state, EventLog(state)


def test_the_log_counts_roles_and_messages_in_its_budget() -> None:
    state, log = _log()
    now = datetime.now(UTC)
    for _ in range(40):
        log.record(now, "note", role="r" * 30_000, message="m" * 1000)
    assert log.bytes <= MAX_LOG_BYTES
    assert state.dropped_events > 0
    assert len(state.events) + state.dropped_events == 40


def test_a_huge_role_is_refused() -> None:
    with pytest.raises(ValueError, match="role"):
        AppendRequest(role="x" * 1_000_000, content="hi")
    with pytest.raises(Rejected, match="role"):
        check_entry(AppendRequest(role="robot", content="hi"))


def test_metadata_is_bounded_in_total_not_only_per_request() -> None:
    metadata: dict[str, object] = {}
    with pytest.raises(Rejected, match="metadata would be"):
        for i in range(200):
            metadata = merged_metadata(metadata, {f"k{i}": "v" * 30_000}, replace=False)
    assert len(str(metadata)) <= MAX_METADATA_BYTES


@pytest.mark.parametrize("timeout", [1e300, float("inf"), float("nan"), -1, 0, 1e12])
def test_an_out_of_range_tool_timeout_is_refused_with_its_range(timeout: float) -> None:
    req = ExecuteRequest(tool="bash:run", params={"command": "true", "timeout": timeout})
    with pytest.raises(Rejected, match=r"params.timeout must be more than 0 and at most"):
        check_call(req, "bash", None, "wf")
    assert tool_timeout(req.params) == 300.0  # never an overflow further down


def test_an_owned_session_refuses_anonymous_and_other_users_but_not_an_admin() -> None:
    for req in (ExecuteRequest(tool="bash:run"), ExecuteRequest(tool="bash:run", user_id="eve")):
        with pytest.raises(Rejected) as refused:
            check_owner(req, "alice", "wf")
        assert refused.value.code == 4012
    check_owner(ExecuteRequest(tool="bash:run", user_id="alice"), "alice", "wf")
    check_owner(ExecuteRequest(tool="bash:run", admin=True), "alice", "wf")
    check_owner(ExecuteRequest(tool="bash:run"), None, "wf")  # no owner: anyone
