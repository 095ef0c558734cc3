"""The HTTP API on a real server and worker: AgentFlow's requests (tests/agentflow_requests.py)
answered as AgentFlow's server answers them, per-user keys and ownership, limits, bad bodies,
and other languages' clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from temporalio.client import Client

from client import Sandbox
from http_api.app import Limits, create_app
from http_api.keys import KeyStore, new_key, parse_lines
from http_api.server import HttpService, HttpSettings, build
from tests import agentflow_requests as af
from tests.conftest import new_sandbox_id
from tests.devserver import free_port
from tests.processes import ROOT, WorkerProcess
from tests.test_agentflow_compat import agentflow_script
from tests.test_temporal_cli import _temporal


@dataclass
class Api:
    url: str
    keys: dict[str, str]
    http: aiohttp.ClientSession

    async def call(
        self,
        call: af.Call,
        user: str | None = "alice",
        worker_id: str = "w",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        """(status, JSON body, headers) of one request as AgentFlow's client sends it."""
        sent = af.headers(worker_id, self.keys[user] if user else None)
        sent.update(headers or {})
        async with self.http.request(
            call.method, self.url + call.path, json=call.body, headers=sent
        ) as response:
            return response.status, await response.json(content_type=None), response.headers


@pytest.fixture(scope="module")
async def api(client: Client, worker: WorkerProcess) -> AsyncIterator[Api]:
    keys: dict[str, str] = {}
    lines = []
    options: dict[str, dict[str, Any]] = {
        "alice": {},
        "bob": {},
        "ops": {"admin": True},
        "carol": {"max_sessions": 1},
        "dave": {"rate": 0.5, "burst": 2},
    }
    for user, opts in options.items():
        keys[user], line = new_key(user, **opts)
        lines.append(line)
    store = KeyStore(parse_lines("\n".join(lines), where="test keys"))
    service = HttpService(create_app(client=client, keys=store, limits=Limits()), "127.0.0.1", 0)
    url = await service.start()
    async with aiohttp.ClientSession() as http:
        yield Api(url, keys, http)
    await service.stop()


async def test_agentflow_client_requests_are_answered_as_agentflow_answers(
    api: Api, tmp_path
) -> None:
    w = new_sandbox_id("af")
    status, body, _ = await api.call(af.health())
    assert status == 200 and body["status"] == "healthy"

    status, body, _ = await api.call(af.warmup(["bash"]), worker_id=w)
    assert status == 200 and body["status"] == "success", body
    assert body["results"] == {"bash": True} and body["summary"]["warmed_up"] >= 1
    status, body, _ = await api.call(af.warmup_status())
    assert status == 200 and body["backends"]["bash"] == {"loaded": True, "warmed_up": True}

    status, body, _ = await api.call(af.list_tools(include_hidden=False))
    assert status == 200 and body["count"] == len(body["tools"])
    run = next(t for t in body["tools"] if t["full_name"] == "bash:run")
    assert run["name"] == "run" and run["resource_type"] == "bash" and not run["stateless"]
    status, body, _ = await api.call(af.get_tool_schema("run"))
    assert status == 200 and body["full_name"] == "bash:run", body
    status, body, _ = await api.call(af.get_tool_schema("fly"))
    assert status == 404 and body["status"] == "error"

    # An explicit session, named.
    call = af.create_session(w, "bash", {"cwd": str(tmp_path)}, custom_name="my_bash")
    status, body, _ = await api.call(call, worker_id=w)
    assert status == 200 and body["code"] == 0, body
    created = body["data"]
    assert created["session_status"] == "active" and created["session_name"] == "my_bash"
    assert body["meta"]["session_id"] == created["session_id"] and body["meta"]["trace_id"]
    status, body, _ = await api.call(af.create_session(w, "bash"), worker_id=w)
    assert status == 200 and body["data"]["status"] == "exists"
    assert body["data"]["session_id"] == created["session_id"]

    status, body, _ = await api.call(
        af.execute(w, "bash:run", {"command": "mkdir d && cd d && export X=1"}), worker_id=w
    )
    assert status == 200 and body["code"] == 0, body
    assert body["meta"]["session_id"] == created["session_id"]
    assert body["meta"]["temporary_session"] is False and body["meta"]["trace_id"]
    # A simple name, AgentFlow's timeout (the tool's own here).
    status, body, _ = await api.call(
        af.execute(w, "run", {"command": "echo $PWD $X"}, 5), worker_id=w
    )
    assert status == 200 and body["data"]["stdout"].split() == [str(tmp_path / "d"), "1"]
    assert body["meta"]["tool"] == "bash:run"

    # Errors: AgentFlow's codes and statuses.
    status, body, _ = await api.call(af.execute(w, "bash:run", {}), worker_id=w)
    assert (status, body["code"]) == (400, 4003) and "command" in body["message"]
    status, body, _ = await api.call(af.execute(w, "fly", {}), worker_id=w)
    assert (status, body["code"]) == (400, 4002)
    status, body, _ = await api.call(
        af.execute(w, "testkit:boom", {"message": "kaput"}), worker_id=w
    )
    assert (status, body["code"]) == (500, 5005) and body["meta"]["temporary_session"] is True
    assert body["data"] == {"error_type": "RuntimeError", "error": "kaput"}

    status, body, _ = await api.call(af.refresh_session(w, "bash"), worker_id=w)
    assert status == 200 and body["data"]["expires_at"] and body["data"]["resource_type"] == "bash"
    status, body, _ = await api.call(af.refresh_session(w), worker_id=w)
    assert status == 200 and body["data"]["refreshed_count"] == 1
    assert body["data"]["details"]["bash"]["status"] == "refreshed"

    status, body, _ = await api.call(af.list_sessions(w), worker_id=w)
    assert status == 200 and body["data"]["count"] == 1
    listed = body["data"]["sessions"][0]
    assert (listed["resource_type"], listed["session_id"], listed["session_name"]) == (
        "bash", created["session_id"], "my_bash",
    )  # fmt: skip
    assert listed["status"] == "active" and listed["expires_at"] and listed["auto_created"] is False
    status, body, _ = await api.call(af.get_status(w), worker_id=w)
    assert status == 200 and body["data"]["active_resources"] == ["bash"]
    assert body["data"]["sessions"]["bash"]["session_id"] == created["session_id"]
    assert body["data"]["tools_available"] >= 1
    status, body, _ = await api.call(af.heartbeat(w), worker_id=w)
    assert status == 200 and body["data"]["active_sessions"] == ["bash"]

    # Batches: all succeed (200), some fail (207, 5010), none succeed (500, 5009).
    ok = {"action": "bash:run", "params": {"command": "echo a"}}
    bad = {"action": "bash:run", "params": {}}
    status, body, _ = await api.call(af.execute_batch(w, [ok, ok]), worker_id=w)
    assert status == 200 and body["code"] == 0 and body["data"]["success_count"] == 2
    status, body, _ = await api.call(af.execute_batch(w, [ok, bad, ok]), worker_id=w)
    assert (status, body["code"]) == (207, 5010)
    assert (body["data"]["executed"], body["data"]["total"]) == (2, 3)  # stopped at the error
    call = af.execute_batch(w, [bad, ok, ok], parallel=True, stop_on_error=False)
    status, body, _ = await api.call(call, worker_id=w)
    assert (status, body["code"], body["data"]["executed"]) == (207, 5010, 3)
    status, body, _ = await api.call(af.execute_batch(w, [bad]), worker_id=w)
    assert (status, body["code"]) == (500, 5009)

    # AgentFlow's reinitialize: destroy, then create with the new config.
    status, body, _ = await api.call(af.destroy_session(w, "bash"), worker_id=w)
    assert status == 200 and body["data"]["session_id"] == created["session_id"]
    status, body, _ = await api.call(af.destroy_session(w, "bash"), worker_id=w)
    assert (status, body["code"]) == (404, 4007)
    status, body, _ = await api.call(af.refresh_session(w, "bash"), worker_id=w)
    assert (status, body["code"]) == (404, 4007)
    status, body, _ = await api.call(af.create_session(w, "bash", {"cwd": "/tmp"}), worker_id=w)
    assert status == 200 and body["data"]["session_id"] != created["session_id"]

    # init routes, then the disconnect that destroys them all.
    status, body, _ = await api.call(af.init_resource(w, "testkit", {}), worker_id=w)
    assert status == 200 and body["data"]["session_status"] == "active"
    call = af.init_batch(w, {"testkit": {"content": {}}, "bash": {}})
    status, body, _ = await api.call(call, worker_id=w)
    assert status == 200 and body["data"]["success_count"] == 2
    status, body, _ = await api.call(af.init_batch(w, {"nope": {}}), worker_id=w)
    assert (status, body["code"]) == (500, 5009)
    status, body, _ = await api.call(af.destroy_all_sessions(w), worker_id=w)
    assert status == 200 and body["data"]["sessions_cleaned"] == 2
    status, body, _ = await api.call(af.list_sessions(w), worker_id=w)
    assert body["data"]["sessions"] == []

    # A failed creation: AgentFlow's 500 with 4007, the reason in the message.
    call = af.create_session(w, "bash", {"cwd": "/no/such/dir"})
    status, body, _ = await api.call(call, worker_id=w)
    assert (status, body["code"]) == (500, 4007) and "/no/such/dir" in body["message"]
    assert body["data"]["session_status"] == "error"

    status, body, _ = await api.call(af.shutdown_server(), worker_id=w)
    assert status == 200 and body["status"] == "success"


async def test_one_session_through_http_the_python_client_and_the_temporal_cli(
    api: Api, client: Client, address: str
) -> None:
    w = new_sandbox_id("same")
    status, body, _ = await api.call(af.create_session(w, "bash", {"cwd": "/tmp"}), worker_id=w)
    assert status == 200, body
    session_id = body["data"]["session_id"]
    await api.call(af.execute(w, "bash:run", {"command": "export FROM_HTTP=yes"}), worker_id=w)

    # The Python client, as the key's user: the same workflow, the same shell.
    python = Sandbox(w, client=client, user_id="alice")
    seen = await python.execute("bash:run", {"command": "echo $FROM_HTTP"})
    assert seen["data"]["stdout"] == "yes\n" and seen["meta"]["session_id"] == session_id
    # The temporal CLI: plain JSON, the owner set from the key.
    view = await _temporal(
        address, "workflow", "query", "--workflow-id", f"{w}:bash", "--name", "describe"
    )
    assert view["queryResult"][0]["session_id"] == session_id
    assert view["queryResult"][0]["user_id"] == "alice"
    # And our Sandbox over HTTP, with alice's key.
    async with Sandbox(server_url=api.url, worker_id=w, api_key=api.keys["alice"]) as remote:
        again = await remote.execute("run", {"command": "echo $FROM_HTTP"})
        assert again["data"]["stdout"] == "yes\n" and again["meta"]["session_id"] == session_id
        await remote.destroy_session("bash")


async def test_keys_bind_identity_and_ownership(api: Api) -> None:
    w = new_sandbox_id("own")
    status, body, headers = await api.call(af.list_sessions(w), user=None, worker_id=w)
    assert (status, body["code"]) == (401, 4011)
    assert headers["WWW-Authenticate"].startswith("Bearer")
    bad = {"Authorization": "Bearer dsk_not-a-key"}
    status, body, _ = await api.call(af.list_sessions(w), user=None, worker_id=w, headers=bad)
    assert (status, body["code"]) == (401, 4011)

    status, body, _ = await api.call(af.create_session(w, "bash"), "alice", w)
    assert status == 200, body
    # Another key's user can neither use, destroy, re-create nor list alice's session.
    status, body, _ = await api.call(af.execute(w, "bash:run", {"command": "id"}), "bob", w)
    assert (status, body["code"]) == (403, 4012) and "bob" in body["message"]
    status, body, _ = await api.call(af.destroy_session(w, "bash"), "bob", w)
    assert (status, body["code"]) == (403, 4012)
    status, body, _ = await api.call(af.create_session(w, "bash"), "bob", w)
    assert (status, body["code"]) == (403, 4012)
    status, body, _ = await api.call(af.list_sessions(w), "bob", w)
    assert status == 200 and body["data"]["sessions"] == []
    # A user id in the body is no claim: the key decides.
    call = af.execute(w, "bash:run", {"command": "true"})
    assert call.body is not None
    call.body["user_id"] = "alice"
    status, body, _ = await api.call(call, "bob", w)
    assert status == 403
    # An administrator's key reaches it; alice's key sent as HTTP Basic (a URL's user:key@)
    # works as a bearer token does.
    status, body, _ = await api.call(af.list_sessions(w), "ops", w)
    assert [s["user_id"] for s in body["data"]["sessions"]] == ["alice"]
    basic = base64.b64encode(f"alice:{api.keys['alice']}".encode()).decode()
    status, body, _ = await api.call(
        af.execute(w, "bash:run", {"command": "true"}), None, w, {"Authorization": f"Basic {basic}"}
    )
    assert status == 200 and body["code"] == 0
    status, body, _ = await api.call(af.destroy_session(w, "bash"), "ops", w)
    assert status == 200
    # Request ids are each user's own: the same id from another key is another call.
    call = af.execute(w, "tally:ping", {"value": "alice's"})
    assert call.body is not None
    call.body["request_id"] = "r-1"
    status, mine, _ = await api.call(call, "alice", w)
    call.body["params"] = {"value": "bob's"}
    status, theirs, _ = await api.call(call, "bob", w)
    assert mine["meta"]["request_id"] == "alice/r-1" and mine["data"]["value"] == "alice's"
    assert theirs["meta"]["request_id"] == "bob/r-1" and theirs["data"]["value"] == "bob's"


async def test_per_key_limits_answer_the_quota_code_with_retry_after(api: Api) -> None:
    first, second = new_sandbox_id("q1"), new_sandbox_id("q2")
    status, body, _ = await api.call(af.create_session(first, "testkit"), "carol", first)
    assert status == 200, body
    status, body, headers = await api.call(af.create_session(second, "testkit"), "carol", second)
    assert (status, body["code"]) == (429, 4013) and "1" in body["message"]
    assert 1 <= int(headers["Retry-After"]) <= 300
    # Opening the session it has is not a new one.
    status, body, _ = await api.call(af.create_session(first, "testkit"), "carol", first)
    assert status == 200 and body["data"]["status"] == "exists"
    await api.call(af.destroy_session(first, "testkit"), "carol", first)
    status, body, _ = await api.call(af.create_session(second, "testkit"), "carol", second)
    assert status == 200, body
    await api.call(af.destroy_session(second, "testkit"), "carol", second)

    # dave: 0.5 requests a second, bursts of 2.
    answers = [await api.call(af.list_sessions("d"), "dave", "d") for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert answers[2][1]["code"] == 4013 and int(answers[2][2]["Retry-After"]) >= 1


async def test_bad_bodies_get_the_code_table_never_a_traceback(api: Api) -> None:
    url = api.url + "/api/v1/execute"
    auth = af.headers("w", api.keys["alice"])

    async def post(data: Any, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        async with api.http.post(url, data=data, headers={**auth, **(headers or {})}) as r:
            text = await r.text()
            assert "Traceback" not in text and 'File "' not in text
            return r.status, json.loads(text)

    status, body = await post(b'{"worker_id": "w", "action": ')
    assert (status, body["code"]) == (400, 4000) and body["meta"]
    status, body = await post(json.dumps({"worker_id": "w", "action": "bash:run", "params": "x"}))
    assert (status, body["code"]) == (422, 4004) and body["data"]["errors"][0]["field"] == "params"
    status, body = await post(json.dumps({"worker_id": 5, "action": ["bash:run"]}))
    assert (status, body["code"]) == (422, 4004)
    status, body = await post(json.dumps({"worker_id": "w"}))
    assert (status, body["code"]) == (422, 4003) and "action" in body["message"]
    status, body = await post(json.dumps({"worker_id": "bad id!", "action": "bash:run"}))
    assert (status, body["code"]) == (400, 4000)
    status, body = await post(json.dumps([1, 2, 3]))
    assert status == 422 and body["code"] in (4003, 4004)
    huge = json.dumps({"worker_id": "w", "action": "bash:run", "params": {"x": "a" * 3_000_000}})
    status, body = await post(huge)
    assert (status, body["code"]) == (413, 4009)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"worker_id": "w", "action": "bash:run", "params": {"x": "'
        for _ in range(40):
            yield b"a" * 100_000
        yield b'"}}'

    status, body = await post(chunks())
    assert (status, body["code"]) == (413, 4009)
    async with api.http.get(api.url + "/api/v1/nothing-here", headers=auth) as r:
        assert r.status == 404 and (await r.json())["code"] == 4000
    # The server still answers.
    status, body, _ = await api.call(af.health())
    assert status == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_and_node_clients(api: Api) -> None:
    w = new_sandbox_id("curl")
    body = json.dumps({"worker_id": w, "action": "bash:run", "params": {"command": "echo hi"}})
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-X", "POST", f"{api.url}/api/v1/execute",
        "-H", f"Authorization: Bearer {api.keys['alice']}",
        "-H", "Content-Type: application/json", "-d", body,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    answer = json.loads(out)
    assert answer["code"] == 0 and answer["data"]["stdout"] == "hi\n", answer
    assert answer["meta"]["temporary_session"] is True

    if shutil.which("node") is None:
        return
    script = """
const [url, key, worker] = process.argv.slice(1);
const call = (path, body) => fetch(url + path, {method: "POST", body: JSON.stringify(body),
  headers: {"Content-Type": "application/json", "Authorization": "Bearer " + key}})
  .then(r => r.json());
(async () => {
  await call("/api/v1/session/create", {worker_id: worker, resource_type: "bash"});
  await call("/api/v1/execute", {worker_id: worker, action: "run", params: {command: "cd /tmp"}});
  const r = await call("/api/v1/execute", {worker_id: worker, action: "run",
                                            params: {command: "pwd"}});
  await call("/api/v1/session/destroy", {worker_id: worker, resource_type: "bash"});
  console.log(JSON.stringify(r));
})();
"""
    proc = await asyncio.create_subprocess_exec(
        "node", "-e", script, api.url, api.keys["alice"], w, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    answer = json.loads(out)
    assert answer["code"] == 0 and answer["data"]["stdout"] == "/tmp\n", answer


def test_without_keys_the_api_listens_on_loopback_only(monkeypatch, client: Client) -> None:
    monkeypatch.delenv("DURABLE_SESSIONS_API_KEYS", raising=False)
    monkeypatch.delenv("DURABLE_SESSIONS_API_KEYS_FILE", raising=False)
    _, host, notes = build(HttpSettings(host="0.0.0.0"), client)
    assert host == "127.0.0.1"
    assert any("No API keys configured" in n and "127.0.0.1 only" in n for n in notes)
    key, line = new_key("erin")
    monkeypatch.setenv("DURABLE_SESSIONS_API_KEYS", line)
    _, host, _ = build(HttpSettings(host="0.0.0.0"), client)
    assert host == "0.0.0.0"


def test_keys_are_stored_hashed_and_checked() -> None:
    key, line = new_key("alice", admin=True, max_sessions=3, rate=2)
    assert key not in line and line.startswith("alice sha256:")
    store = KeyStore(parse_lines(f"# comment\n{line}; bob sha256:{'0' * 64}", where="x"))
    found = store.verify(key)
    assert found is not None and found.user_id == "alice" and found.admin
    assert (found.max_sessions, found.rate) == (3, 2.0)
    assert store.verify(key + "x") is None and store.verify("") is None
    with pytest.raises(ValueError, match="sha256"):
        parse_lines(f"alice {key}", where="x")  # a key itself is refused: store its digest


async def test_an_agentflow_script_runs_over_http(api: Api) -> None:
    sandbox = Sandbox(
        server_url=api.url,
        worker_id=new_sandbox_id("afh"),
        api_key=api.keys["alice"],
        timeout=60,
        retry_count=3,
        warmup_resources=["bash"],
        auto_start_server=False,
    )
    await agentflow_script(sandbox)


async def test_the_sync_flavour_over_http(api: Api) -> None:
    def script() -> None:  # in a thread: the server answers on this test's event loop
        with Sandbox(api.url, worker_id=new_sandbox_id("s"), api_key=api.keys["bob"]) as box:
            assert box.create_session_sync("bash")["status"] == "success"
            assert box.execute_sync("run", {"command": "echo hi"})["data"]["stdout"] == "hi\n"
            assert [s["user_id"] for s in box.list_sessions_sync()] == ["bob"]

    await asyncio.to_thread(script)


async def test_the_http_command_serves_and_says_it_listens_on_loopback_only(
    address: str, worker: WorkerProcess
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_SESSIONS_API_KEYS")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "http", "--address", address, "--host", "0.0.0.0",
        "--port", str(free_port()),
        cwd=str(ROOT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        while not lines or "HTTP API" not in lines[-1]:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "".join(lines)
            lines.append(line)
        assert any("listening on 127.0.0.1 only" in line for line in lines), lines
        url = lines[-1].split(" on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            call = af.execute("cmd", "run", {"command": "echo local"})
            async with http.post(url + call.path, json=call.body) as response:
                answer = await response.json()
        assert answer["code"] == 0 and answer["data"]["stdout"] == "local\n", answer
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


async def test_openapi_docs_list_agentflows_routes(api: Api) -> None:
    async with api.http.get(api.url + "/docs") as response:
        assert response.status == 200 and "swagger" in (await response.text()).lower()
    async with api.http.get(api.url + "/openapi.json") as response:
        paths = set((await response.json())["paths"])
    calls = [
        af.health(), af.execute("w", "x"), af.execute_batch("w", []), af.get_status("w"),
        af.heartbeat("w"), af.create_session("w", "x"), af.destroy_session("w", "x"),
        af.list_sessions("w"), af.destroy_all_sessions("w"), af.refresh_session("w"),
        af.init_resource("w", "x"), af.init_batch("w", {}), af.warmup(None), af.warmup_status(),
        af.shutdown_server(), af.list_tools(),
    ]  # fmt: skip
    assert {c.path.split("?")[0] for c in calls} <= paths
    assert {"/api/v1/tools/{tool_name}/schema", "/api/v1/init/from-config"} <= paths
