"""SessionManager on a real server: owners, limits, states, checkpoints and history."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio.client import Client

from client import (
    PermissionDenied,
    QuotaExceeded,
    Sandbox,
    SessionError,
    SessionManager,
    SessionNotFound,
)
from contract import ErrorCode, SessionStatus
from contract.limits import MAX_CHECKPOINT_BYTES, MAX_CHECKPOINTS
from tests.conftest import new_sandbox_id
from tests.test_quickstart import _alive


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    """Visibility and timers are asynchronous: poll until the check holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.25)


@pytest.fixture
def manager(client: Client, worker) -> SessionManager:
    """The operator's manager: it names no user, so it needs ``admin`` to reach owned sessions."""
    return SessionManager(client=client, admin=True)


async def test_record_sessions_carry_owner_and_metadata(manager: SessionManager) -> None:
    user = _user()
    created = await manager.create_session(user, "helper", {"tier": "pro", "lang": "en"})
    sid = created.session_id
    assert created.state is SessionStatus.ACTIVE and created.resource_type is None

    got = await manager.get_session(sid, user_id=user)
    assert got is not None
    assert (got.user_id, got.agent_id, got.metadata) == (
        user,
        "helper",
        {"tier": "pro", "lang": "en"},
    )
    assert await manager.session_exists(sid)

    changed = await manager.update_session_metadata(sid, {"tier": "free", "lang": None, "n": 1})
    assert changed.metadata == {"tier": "free", "n": 1}
    assert (await manager.rename(sid, "Trip planning")).name == "Trip planning"
    before = changed.deadline
    refreshed = await manager.refresh_session(sid, ttl=7200)
    assert before is not None and refreshed.deadline is not None
    assert refreshed.ttl_seconds == 7200 and refreshed.deadline > before

    # A record has no resource: a tool call is refused, with a reason.
    envelope = await manager.execute(sid, "bash:run", {"command": "true"})
    assert envelope["code"] == ErrorCode.NO_SESSION and "no resource" in envelope["message"]

    assert await manager.get_session("sess_doesnotexist") is None
    assert not await manager.session_exists("sess_doesnotexist")
    with pytest.raises(SessionNotFound):
        await manager.rename("sess_doesnotexist", "x")
    with pytest.raises(SessionError) as bad:
        await manager.get_session("no spaces or 'quotes'")
    assert bad.value.code == ErrorCode.INVALID_INPUT

    assert await manager.delete_session(sid, user_id=user)
    assert not await manager.session_exists(sid)  # the server removes its record later


async def test_sandbox_sessions_carry_their_owner(client: Client, worker) -> None:
    user = _user()
    async with Sandbox(
        new_sandbox_id(), client=client, user_id=user, agent_id="coder", metadata={"k": "v"}
    ) as sandbox:
        await sandbox.create_session("bash")
        manager = SessionManager(client=client, user_id=user)
        record = await manager.get_session(f"{sandbox.sandbox_id}:bash")
        assert record is not None
        assert (record.user_id, record.agent_id, record.metadata) == (user, "coder", {"k": "v"})
        assert record.resource_type == "bash" and record.instance_id


async def test_another_users_session_is_refused_and_left_unchanged(
    client: Client, manager: SessionManager
) -> None:
    owner = _user()
    sid = (await manager.create_session(owner, "a", {"secret": "mine"})).session_id
    cid = await manager.save_checkpoint(sid, {"turn": 1}, user_id=owner)
    intruder = SessionManager(client=client, user_id=_user())

    attempts = [
        intruder.get_session(sid),
        intruder.session_exists(sid),
        intruder.update_session_metadata(sid, {"secret": "stolen"}),
        intruder.rename(sid, "mine now"),
        intruder.refresh_session(sid),
        intruder.set_session_state(sid, "paused"),
        intruder.save_checkpoint(sid, {"x": 1}),
        intruder.get_checkpoint(sid, cid),
        intruder.delete_checkpoint(sid, cid),
        intruder.clear_checkpoints(sid),
        intruder.add_message(sid, "user", "hi"),
        intruder.search_events(sid),
        intruder.export_history(sid),
        intruder.delete_session(sid),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied) as denied:
            await attempt
        assert denied.value.code == ErrorCode.PERMISSION_DENIED
        assert "permission denied" in denied.value.message
    envelope = await intruder.execute(sid, "bash:run", {"command": "true"})
    assert envelope["code"] == ErrorCode.PERMISSION_DENIED
    # A manager scoped to one user cannot act for another either.
    with pytest.raises(PermissionDenied):
        await intruder.get_session(sid, user_id=owner)

    record = await manager.get_session(sid, user_id=owner)
    assert record is not None
    assert record.metadata == {"secret": "mine"} and record.name == ""
    assert record.state is SessionStatus.ACTIVE and record.checkpoint_count == 1
    assert await manager.search_events(sid, kind="message") == {
        "events": [],
        "has_more": False,
        "dropped": 0,
    }
    await manager.delete_session(sid)


async def test_user_session_limit_rejects_or_closes_the_oldest(client: Client, worker) -> None:
    user = _user()
    strict = SessionManager(client=client, max_sessions_per_user=2)
    first = (await strict.create_session(user, "a")).session_id
    await strict.create_session(user, "a")
    await _eventually(lambda: _count_is(strict, user, 2))
    with pytest.raises(QuotaExceeded) as over:
        await strict.create_session(user, "a")
    assert over.value.code == ErrorCode.QUOTA_EXCEEDED
    assert "limit is 2" in over.value.message
    assert await strict.get_active_session_count(user) == 2  # nothing was started

    evicting = SessionManager(client=client, max_sessions_per_user=2, on_limit="close_oldest")
    third = await evicting.create_session(user, "a")
    assert third.state is SessionStatus.ACTIVE
    oldest = await evicting.get_session(first)
    assert oldest is not None and oldest.state is SessionStatus.CLOSED
    events = await evicting.search_events(first, kind="destroy")
    assert "reached the limit of 2 sessions" in events["events"][0]["message"]
    assert await evicting.delete_user_sessions(user) == 2  # the first was closed already


async def _count_is(manager: SessionManager, user: str, n: int) -> bool:
    return await manager.get_active_session_count(user) == n


async def test_listing_counting_and_stats_come_from_visibility(
    client: Client, manager: SessionManager
) -> None:
    user = _user()
    a = (await manager.create_session(user, "planner", {"i": 0})).session_id
    b = (await manager.create_session(user, "coder")).session_id
    short = (await manager.create_session(user, "planner", ttl=1)).session_id
    other = (await manager.create_session(_user(), "planner")).session_id

    async def expired() -> bool:
        record = await manager.get_session(short)
        return record is not None and record.state is SessionStatus.EXPIRED

    await _eventually(expired)
    await _eventually(lambda: _count_is(manager, user, 2))

    live = await manager.get_sessions_by_user(user)
    assert [r.session_id for r in live] == [b, a]  # newest first
    assert live[1].metadata == {"i": 0}  # live sessions come with their full record
    every = await manager.get_sessions_by_user(user, include_closed=True)
    assert {r.session_id for r in every} == {a, b, short}

    scoped = SessionManager(client=client, user_id=user)
    recent = await scoped.get_recent_sessions(limit=2)
    assert [r.session_id for r in recent] == [short, b]
    with pytest.raises(SessionError):
        await scoped.get_recent_sessions(limit=0)

    stats = await scoped.stats()
    assert (stats["total"], stats["live"], stats["active"], stats["expired"]) == (3, 2, 2, 1)
    assert 0.5 < stats["average_duration_seconds"] < 15

    assert await scoped.delete_agent_sessions("planner") == 1  # a (short had expired)
    assert await manager.session_exists(other)  # another user's planner
    assert await manager.delete_user_sessions(user) == 1  # b
    assert await manager.delete_user_sessions(user) == 0
    assert not await manager.session_exists(b)
    await manager.delete_session(other)


async def test_idle_pause_and_transparent_resume(client: Client, manager: SessionManager) -> None:
    user = _user()
    record = await manager.create_session(
        user, "coder", resource_type="bash", config={"cwd": "/tmp"}, idle_seconds=1
    )
    sid = record.session_id
    command = "cd / && export MARK=kept && readlink /proc/self/ns/pid"  # the sandbox's
    run = await manager.execute(sid, "bash:run", {"command": command})
    pid = run["data"]["stdout"].strip()

    async def state_is(state: SessionStatus) -> bool:
        return await manager.get_session_state(sid) is state

    await _eventually(lambda: state_is(SessionStatus.IDLE))
    await _eventually(lambda: _visible_in_state(client, sid, "idle"))
    assert (await manager.execute(sid, "bash:run", {"command": "true"}))["code"] == 0
    assert await manager.get_session_state(sid) is SessionStatus.ACTIVE

    paused = await manager.set_session_state(sid, "paused", user_id=user)
    assert paused.state is SessionStatus.PAUSED and paused.instance_id is None
    assert not _alive(pid), "pausing releases the resource"
    await _eventually(lambda: _visible_in_state(client, sid, "paused"))

    resumed = await manager.execute(sid, "bash:run", {"command": "pwd; echo $MARK"})
    assert resumed["code"] == 0
    assert resumed["data"]["stdout"].split() == ["/", "kept"]  # restored from its snapshot
    assert resumed["meta"]["session_id"] != record.instance_id
    assert await manager.get_session_state(sid) is SessionStatus.ACTIVE
    kinds = [e["kind"] for e in (await manager.search_events(sid, limit=100))["events"]]
    assert "pause" in kinds and kinds.count("initialize") == 2

    with pytest.raises(SessionError) as bad:
        await manager.set_session_state(sid, "closed")
    assert bad.value.code == ErrorCode.INVALID_INPUT
    await manager.delete_session(sid)


async def _visible_in_state(client: Client, sid: str, state: str) -> bool:
    found = [
        e.id
        async for e in client.list_workflows(f"WorkflowId = '{sid}' AND SessionState = '{state}'")
    ]
    return found == [sid]


async def test_on_expire_pause_keeps_the_session(manager: SessionManager) -> None:
    sid = (
        await manager.create_session(_user(), "a", ttl=1, resource_type="bash", on_expire="pause")
    ).session_id

    async def paused() -> bool:
        return await manager.get_session_state(sid) is SessionStatus.PAUSED

    await _eventually(paused)
    assert await manager.session_exists(sid)
    again = await manager.execute(sid, "bash:run", {"command": "echo back"})
    assert again["code"] == 0 and again["data"]["stdout"] == "back\n"
    await manager.delete_session(sid)


async def test_checkpoints_save_list_get_delete_and_resume(manager: SessionManager) -> None:
    user = _user()
    sid = (await manager.create_session(user, "a", resource_type="bash")).session_id
    await manager.execute(sid, "bash:run", {"command": "cd /tmp"})
    first = await manager.save_checkpoint(sid, {"turn": 1}, label="in tmp")
    await manager.execute(sid, "bash:run", {"command": "cd /"})
    second = await manager.save_checkpoint(sid, {"turn": 2})

    listed = await manager.list_checkpoints(sid)
    assert [c["checkpoint_id"] for c in listed] == [first, second]
    assert listed[0]["label"] == "in tmp" and "data" not in listed[0]
    latest = await manager.get_latest_checkpoint(sid)
    assert latest is not None and latest["data"] == {"turn": 2}
    got = await manager.get_checkpoint(sid, first)
    assert got is not None and got["data"] == {"turn": 1}
    assert await manager.get_checkpoint(sid, "ckpt_unknown") is None

    # Pause, then resume from the first checkpoint: the shell comes back in /tmp.
    await manager.set_session_state(sid, SessionStatus.PAUSED)
    resumed = await manager.set_session_state(sid, "active", checkpoint_id=first)
    assert resumed.state is SessionStatus.ACTIVE and resumed.instance_id
    pwd = await manager.execute(sid, "bash:run", {"command": "pwd"})
    assert pwd["data"]["stdout"] == "/tmp\n"

    with pytest.raises(SessionError) as unknown:
        await manager.delete_checkpoint(sid, "ckpt_unknown")
    assert unknown.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(SessionError) as big:
        await manager.save_checkpoint(sid, {"blob": "x" * MAX_CHECKPOINT_BYTES})
    assert big.value.code == ErrorCode.TOO_LARGE and str(MAX_CHECKPOINT_BYTES) in big.value.message
    assert await manager.delete_checkpoint(sid, first)
    assert [c["checkpoint_id"] for c in await manager.list_checkpoints(sid)] == [second]

    for i in range(MAX_CHECKPOINTS - 1):
        await manager.save_checkpoint(sid, {"i": i})
    with pytest.raises(QuotaExceeded) as full:
        await manager.save_checkpoint(sid, {"one": "more"})
    assert str(MAX_CHECKPOINTS) in full.value.message
    assert len(await manager.list_checkpoints(sid)) == MAX_CHECKPOINTS
    assert await manager.clear_checkpoints(sid) == MAX_CHECKPOINTS
    assert await manager.get_latest_checkpoint(sid) is None
    await manager.delete_session(sid)


async def test_history_messages_search_and_export(manager: SessionManager) -> None:
    sid = (await manager.create_session(_user(), "a")).session_id
    for i in range(6):
        await manager.add_message(sid, "user" if i % 2 == 0 else "assistant", f"m{i}")
    note = await manager.add_event(sid, "note", {"topic": "travel"}, message="picked a topic")
    assert note["kind"] == "note" and note["content"] == {"topic": "travel"}

    chat = await manager.get_chat_history(sid)
    assert [m["content"] for m in chat] == [f"m{i}" for i in range(6)]
    assert [m["role"] for m in await manager.get_chat_history(sid, last_n=2)] == [
        "user",
        "assistant",
    ]

    page = await manager.search_events(sid, kind="message", limit=4)
    assert [e["content"] for e in page["events"]] == ["m0", "m1", "m2", "m3"]
    assert page["has_more"] is True
    rest = await manager.search_events(
        sid, kind="message", start_id=page["events"][-1]["id"] + 1, limit=4
    )
    assert [e["content"] for e in rest["events"]] == ["m4", "m5"] and rest["has_more"] is False
    backwards = await manager.search_events(sid, kind="message", reverse=True, limit=2)
    assert [e["content"] for e in backwards["events"]] == ["m5", "m4"]
    ids = [e["id"] for e in page["events"]]
    window = await manager.search_events(sid, start_id=ids[1], end_id=ids[2])
    assert [e["id"] for e in window["events"]] == ids[1:3]

    bad_pages: list[dict[str, Any]] = [
        {"limit": 0},
        {"limit": 101},
        {"start_id": 0},
        {"start_id": 5, "end_id": 2},
    ]
    for bad in bad_pages:
        with pytest.raises(SessionError) as refused:
            await manager.search_events(sid, **bad)
        assert refused.value.code == ErrorCode.INVALID_INPUT
    with pytest.raises(SessionError) as no_role:
        await manager.add_message(sid, "narrator", "hello")
    assert no_role.value.code == ErrorCode.INVALID_INPUT and "role" in no_role.value.message
    with pytest.raises(SessionError) as huge:
        await manager.add_message(sid, "user", "x" * 40_000)
    assert huge.value.code == ErrorCode.TOO_LARGE

    lines = (await manager.export_history(sid)).splitlines()
    exported = [json.loads(line) for line in lines]
    assert [e["id"] for e in exported] == sorted(e["id"] for e in exported)
    assert sum(e["kind"] == "message" for e in exported) == 6
    assert exported[-1]["kind"] == "note"
    await manager.delete_session(sid)


async def test_an_owner_watches_a_streaming_call_and_nobody_else_may(
    client: Client, worker
) -> None:
    user = _user()
    owner = SessionManager(client=client, user_id=user)
    record = await owner.create_session(user, "a", resource_type="bash")
    sid = record.session_id
    request_id = f"watched-{uuid.uuid4().hex[:8]}"

    async def watched() -> list[Any]:
        got = []
        async for chunk in owner.watch(sid, request_id=request_id):
            got.append(chunk)
            if chunk.kind == "end":
                return got
        raise AssertionError("the session closed first")

    watcher = asyncio.create_task(watched())
    command = "echo one; sleep 0.3; echo two"
    answer = await owner.execute(sid, "bash:run", {"command": command}, request_id=request_id,
                                 stream=True)  # fmt: skip
    assert answer["code"] == 0 and answer["data"]["stdout"] == "one\ntwo\n", answer
    chunks = await asyncio.wait_for(watcher, 15)
    assert "".join(c.text for c in chunks if c.kind == "output") == "one\ntwo\n"
    assert chunks[-1].code == 0

    intruder = SessionManager(client=client, user_id=_user())
    with pytest.raises(PermissionDenied):
        await anext(aiter(intruder.watch(sid)))
    with pytest.raises(SessionNotFound):
        await anext(aiter(owner.watch("sess_doesnotexist")))
    await owner.delete_session(sid)
