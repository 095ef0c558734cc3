"""Fork (issue 26 item 2) on the real server and worker: children start from the parent's
workspace, working directory and exported variables (what a background process wrote after the
last call too), are independent of each other and of the parent, carry their lineage, and bad
forks are refused before history; over HTTP, owners and the key's quota hold."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from temporalio.client import Client

from client import Sandbox, SessionError, SessionManager
from contract import ParentSessionAttr
from http_api.app import Limits, create_app
from http_api.keys import KeyStore, new_key, parse_lines
from http_api.server import HttpService
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess, run_cli
from tests.replaying import replay


async def _run(sb: Sandbox, command: str) -> dict[str, Any]:
    answer = await sb.execute("bash:run", {"command": command})
    assert answer["code"] == 0, answer
    return answer


async def test_children_start_from_the_parent_and_are_independent(
    client: Client, worker: WorkerProcess
) -> None:
    owner = new_sandbox_id("owner")
    parent = await Sandbox(new_sandbox_id("fork"), client=client, user_id=owner).start()
    await parent.create_session("bash")
    await _run(parent, "mkdir -p proj && cd proj && echo base > a.txt && export STEP=3")
    # Written after the call answered: only the fork's fresh snapshot can have it.
    await _run(parent, "(sleep 0.3; echo late > late.txt) > /dev/null 2>&1 &")
    started = await parent.execute("bash:start", {"command": "sleep 600"})
    assert started["code"] == 0, started
    await asyncio.sleep(1.0)
    children = await parent.fork("bash", n=3)
    try:
        seen = await asyncio.gather(
            *(_run(c, "pwd; echo $STEP; cat a.txt late.txt") for c in children)
        )
        for answer in seen:
            assert answer["data"]["stdout"].split() == ["/workspace/proj", "3", "base", "late"]
        # A background process stays the parent's: a child lists it as lost.
        for sb, status in ((children[0], "lost"), (parent, "running")):
            listed = (await sb.execute("bash:status", {}))["data"]["processes"]
            assert [p["status"] for p in listed] == [status], listed
        # A write in one is seen by no other, nor by the parent; the parent's by no child.
        await _run(children[0], "echo mine > only0.txt")
        await _run(parent, "echo p > onlyp.txt")
        for sb in (*children[1:], parent):
            listing = (await _run(sb, "ls"))["data"]["stdout"].split()
            assert "only0.txt" not in listing, listing
        listing = (await _run(children[0], "ls"))["data"]["stdout"].split()
        assert "only0.txt" in listing and "onlyp.txt" not in listing, listing
        # Lineage: the view, the search attribute, the UI's details; ids of their own.
        parent_id = f"{parent.sandbox_id}:bash"
        ids = {c.sandbox_id for c in children}
        assert len(ids) == 3 and parent.sandbox_id not in ids
        view = await children[1].describe_session("bash")
        assert view is not None and view["parent_session"] == parent_id
        described = await client.get_workflow_handle(f"{children[1].sandbox_id}:bash").describe()
        assert described.typed_search_attributes.get(ParentSessionAttr) == parent_id
        assert parent_id in (await described.static_summary() or "")
        assert (await described.memo()) == {"parent_session": parent_id}
        kinds = [e["kind"] for e in (await parent.get_events("bash", kind="fork"))["events"]]
        assert kinds == ["fork"]
        await _listed_as_a_tree(client, owner, parent_id, {f"{i}:bash" for i in ids})
    finally:
        for c in children:
            await c.destroy_session("bash")
        await parent.destroy_session("bash")


async def _listed_as_a_tree(client: Client, owner: str, parent: str, children: set[str]) -> None:
    """``sessions ls --tree`` shows the children under their parent (visibility may take a
    moment to list them)."""
    address = client.service_client.config.target_host
    for _ in range(50):
        code, out = await run_cli(
            "sessions", "ls", "--owner", owner, "--tree", "--address", address
        )
        assert code == 0, out
        lines = [line for line in out.splitlines() if ":bash" in line]
        if len(lines) == 1 + len(children):
            break
        await asyncio.sleep(0.2)
    assert parent in lines[0] and "└─" not in lines[0], out
    shown = {line.split("└─ ")[1].split()[0] for line in lines[1:] if "└─ " in line}
    assert shown == children, out
    code, out = await run_cli("sessions", "show", min(children), "--address", address)
    assert code == 0, out
    assert any("forked from" in line and parent in line for line in out.splitlines()), out


async def test_a_fork_from_a_checkpoint_and_bad_forks_refused(
    client: Client, worker: WorkerProcess
) -> None:
    manager = SessionManager(client=client, user_id="forker")
    record = await manager.create_session("forker", "a", resource_type="bash")
    sid = record.session_id
    assert (await manager.execute(sid, "bash:run", {"command": "echo one > one"}))["code"] == 0
    checkpoint = await manager.save_checkpoint(sid, {"step": 1})
    assert (await manager.execute(sid, "bash:run", {"command": "echo two > two"}))["code"] == 0
    children = await manager.fork(sid, 2, from_checkpoint=checkpoint, ttl=120)
    try:
        for child in children:
            assert child.user_id == "forker" and child.ttl_seconds == 120
            answer = await manager.execute(child.session_id, "bash:run", {"command": "ls"})
            assert answer["data"]["stdout"].split() == ["one"], answer
        for n, code in ((0, 4000), (33, 4000)):
            with pytest.raises(SessionError) as refused:
                await manager.fork(sid, n)
            assert refused.value.code == code
        with pytest.raises(SessionError) as refused:
            await manager.fork(sid, 1, from_checkpoint="ckpt_nope")
        assert refused.value.code == 4008 and "ckpt_nope" in refused.value.message
        other = SessionManager(client=client, user_id="someone-else")
        with pytest.raises(SessionError) as refused:
            await other.fork(sid, 1)
        assert refused.value.code == 4012
        # Refused before history: the parent's log shows the one fork that was made.
        events = (await manager.search_events(sid, kind="fork"))["events"]
        assert len(events) == 1, events
        await manager.delete_session(sid)
        with pytest.raises(SessionError) as refused:
            await manager.fork(sid, 1)
        assert refused.value.code == 4007
    finally:
        for child in children:
            await manager.delete_session(child.session_id)


@pytest.fixture(scope="module")
async def http_api(
    client: Client, worker: WorkerProcess
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    keys: dict[str, str] = {}
    lines = []
    options: dict[str, dict[str, Any]] = {"alice": {"max_sessions": 3}, "bob": {}}
    for user, opts in options.items():
        keys[user], line = new_key(user, **opts)
        lines.append(line)
    store = KeyStore(parse_lines("\n".join(lines), where="test keys"))
    service = HttpService(create_app(client=client, keys=store, limits=Limits()), "127.0.0.1", 0)
    url = await service.start()
    yield url, keys
    await service.stop()


async def test_http_fork_checks_the_owner_and_counts_the_quota(
    http_api: tuple[str, dict[str, str]],
) -> None:
    url, keys = http_api
    worker_id = new_sandbox_id("hfork")

    async def post(user: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {keys[user]}", "X-Worker-ID": worker_id}
        async with (
            aiohttp.ClientSession() as http,
            http.post(url + path, json=body, headers=headers) as response,
        ):
            return response.status, await response.json()

    status, body = await post("alice", "/api/v1/session/create", {"resource_type": "bash"})
    assert status == 200, body
    fork = {"resource_type": "bash", "n": 2}
    status, body = await post("bob", "/api/v1/session/fork", fork)
    assert (status, body["code"]) == (403, 4012), body
    status, body = await post("alice", "/api/v1/session/fork", {**fork, "n": 3})
    assert (status, body["code"]) == (429, 4013), body  # 1 live + 3 > 3
    status, body = await post("alice", "/api/v1/session/fork", {**fork, "n": 0})
    assert (status, body["code"]) == (400, 4000), body
    status, body = await post("alice", "/api/v1/session/fork", fork)
    assert status == 200 and body["data"]["count"] == 2, body
    children = body["data"]["children"]
    for child in children:
        assert child["session"]["user_id"] == "alice"
        assert child["session"]["parent_session"] == f"{worker_id}:bash"
    # A child's calls go to its own sandbox, by its worker id.
    child_worker = children[0]["worker_id"]
    headers = {"Authorization": f"Bearer {keys['alice']}", "X-Worker-ID": child_worker}
    async with aiohttp.ClientSession() as http:
        call = {"action": "bash:run", "params": {"command": "pwd"}}
        async with http.post(url + "/api/v1/execute", json=call, headers=headers) as response:
            answer = await response.json()
        assert answer["code"] == 0 and answer["data"]["stdout"] == "/workspace\n", answer
        for w in (worker_id, *(c["worker_id"] for c in children)):
            headers["X-Worker-ID"] = w
            async with http.post(
                url + "/api/v1/session/destroy", json={"resource_type": "bash"}, headers=headers
            ) as response:
                assert response.status == 200


async def test_fork_and_suspend_histories_replay(client: Client, worker: WorkerProcess) -> None:
    """The new paths replay against the code (``tests/histories/fork_*.json`` keep them:
    ``RECORD_HISTORIES=1`` with this test alone records them anew)."""
    parent = await Sandbox(new_sandbox_id("replay-fork"), client=client).start()
    await parent.create_session("bash", idle_suspend_seconds=0.5)
    await _run(parent, "mkdir -p /workspace/r && cd /workspace/r && export R=1")
    (child,) = await parent.fork("bash", n=1)
    await _run(child, "echo $R > seen")
    for _ in range(100):
        view = await parent.describe_session("bash")
        if view is not None and view["status"] == "paused":
            break
        await asyncio.sleep(0.1)
    assert (await _run(parent, "pwd"))["meta"]["resumed"] is True
    await child.destroy_session("bash")
    await parent.destroy_session("bash")
    for name, sb in (("fork_suspend_resume_parent", parent), ("fork_child", child)):
        history = await client.get_workflow_handle(f"{sb.sandbox_id}:bash").fetch_history()
        await replay(history, name)


async def test_a_code_child_replays_the_parents_cells(
    client: Client, worker: WorkerProcess
) -> None:
    """With ``restore: replay`` a child's interpreter has the parent's names (docs say so)."""
    parent = await Sandbox(new_sandbox_id("fork-code"), client=client).start()
    await parent.create_session("code", {"restore": "replay"})
    try:
        assert (await parent.execute("code:execute", {"code": "x = 41"}))["code"] == 0
        (child,) = await parent.fork("code", n=1)
        answer = await child.execute("code:execute", {"code": "x + 1"})
        assert answer["code"] == 0 and answer["data"]["result"] == "42", answer
        await child.destroy_session("code")
    finally:
        await parent.destroy_session("code")
