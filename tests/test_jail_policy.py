"""A session's config cannot weaken its jail beyond what an operator allowed, and a session with
network reaches out without ever reaching the host (issue 23, items 1 and 2).

Real dev server, a real worker process whose operator allowed some things (``--session-allow``),
the real HTTP API with keys that allow less or more, and real sandboxes with slirp4netns.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from backends.jail_policy import JailCeiling, parse_allow
from client import Sandbox
from contract import ErrorCode, session_workflow_id
from http_api.app import Limits, create_app
from http_api.keys import KeyStore, new_key, parse_line, parse_lines
from http_api.server import HttpService
from integrations.gateway import SessionGateway
from integrations.mcp_server import SessionsMCPServer
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess
from tests.sandboxes import children_named, host_address, running

#: What this module's worker lets sessions ask; the "roomy" key asks the same.
WORKER_ALLOWS = "network,memory_mb=2048,processes=512,workspace_mb=2048"
HOST = host_address()
#: What the attacker of issue 23 asked for, one setting at a time and all at once.
GREEDY: list[dict[str, Any]] = [
    {"isolation": "none"},
    {"network": True},
    {"memory_mb": 65536},
    {"processes": 4096},
    {"workspace_mb": 65536},
    {"tmp_mb": 65536},
    {"nice": 0},
    {"isolation": "none", "network": True, "memory_mb": 65536, "processes": 4096,
     "workspace_mb": 65536},
]  # fmt: skip


# --- the syntax ----------------------------------------------------------------------------------


def test_allowances_parse_and_refuse_what_is_wrong() -> None:
    ceiling = parse_allow("network, memory_mb=4096 nice=0")
    assert ceiling == JailCeiling(network=True, raised=(("memory_mb", 4096), ("nice", 0)))
    assert ceiling.tokens() == ["network", "memory_mb=4096", "nice=0"]
    assert parse_allow("") == JailCeiling()
    assert parse_allow("isolation=none").isolation_none
    for bad, words in [
        ("memory_mb=99", "outside 128..65536"),
        ("memory_mb=512", "below the default (1024)"),
        ("nice=15", "above the default (10)"),
        ("memory_mb=lots", "must be an integer"),
        ("root", "unknown session allowance 'root'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(words)):
            parse_allow(bad)
    with pytest.raises(ValueError, match="never allowed over the HTTP API"):
        parse_allow("isolation=none", none_possible=False)


def test_a_keys_file_line_carries_the_keys_allowances() -> None:
    key, line = new_key("builder", max_sessions=3, allow="network,memory_mb=2048")
    assert line.endswith(" sessions=3 network memory_mb=2048") and key not in line
    entry = parse_line(line)
    assert entry.ceiling == JailCeiling(network=True, raised=(("memory_mb", 2048),))
    assert entry.max_sessions == 3
    assert parse_line(line.split(" sessions")[0]).ceiling == JailCeiling()  # nothing by default
    with pytest.raises(ValueError, match="builder: isolation=none is never allowed"):
        parse_line(line + " isolation=none")
    with pytest.raises(ValueError, match="builder: workspace_mb=0 is outside"):
        parse_line(line + " workspace_mb=0")


# --- fixtures: a worker, the HTTP API ------------------------------------------------------------


@pytest.fixture(scope="module")
async def jail_queue(address: str) -> AsyncIterator[tuple[str, WorkerProcess]]:
    queue = f"jail-{uuid.uuid4().hex[:8]}"
    worker = await WorkerProcess.start(
        address, args=["--task-queue", queue, "--backends", "bash", "code", "--session-allow",
                       WORKER_ALLOWS],
    )  # fmt: skip
    yield queue, worker
    await worker.stop()


@pytest.fixture(scope="module")
async def api(client: Client, jail_queue: tuple[str, WorkerProcess]) -> AsyncIterator[Api]:
    keys: dict[str, str] = {}
    lines = []
    for user, options in {
        "plain": {},
        "ops": {"admin": True},
        "roomy": {"allow": WORKER_ALLOWS},
    }.items():
        keys[user], line = new_key(user, **options)  # type: ignore[arg-type]
        lines.append(line)
    store = KeyStore(parse_lines("\n".join(lines), where="test keys"))
    app = create_app(client=client, keys=store, limits=Limits(), task_queue=jail_queue[0])
    service = HttpService(app, "127.0.0.1", 0)
    url = await service.start()
    async with aiohttp.ClientSession() as http:
        yield Api(url, keys, http, int(url.rsplit(":", 1)[1].strip("/")))
    await service.stop()


class Api:
    def __init__(self, url: str, keys: dict[str, str], http: aiohttp.ClientSession, port: int):
        self.url = url.rstrip("/")
        self.keys = keys
        self.http = http
        self.port = port

    async def post(self, user: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.keys[user]}"}
        async with self.http.post(self.url + path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)


async def _no_session(client: Client, worker_id: str, resource_type: str = "bash") -> None:
    """Nothing was started for this sandbox: no workflow exists under the session's id."""
    with pytest.raises(RPCError) as found:
        await client.get_workflow_handle(session_workflow_id(worker_id, resource_type)).describe()
    assert found.value.status == RPCStatusCode.NOT_FOUND


# --- item 1: the HTTP API, per key ---------------------------------------------------------------


@pytest.mark.parametrize("user", ["plain", "ops"])
@pytest.mark.parametrize("config", GREEDY, ids=lambda c: "+".join(c))
async def test_a_key_that_was_allowed_nothing_gets_4012_and_no_session(
    api: Api, client: Client, user: str, config: dict[str, Any]
) -> None:
    w = new_sandbox_id("greedy")
    body = {"worker_id": w, "resource_type": "bash", "session_config": config}
    status, answer = await api.post(user, "/api/v1/session/create", body)
    assert status == 403 and answer["code"] == ErrorCode.PERMISSION_DENIED, answer
    setting = next(iter(config))
    assert answer["message"].startswith(setting) or f"{setting} " in answer["message"], answer
    assert answer["data"]["setting"] == setting
    if setting == "isolation":  # whatever the key, even an admin's
        assert "never allowed" in answer["message"]
    else:
        assert "keys file" in answer["message"], answer
    status, listed = await api.post(user, "/api/v1/session/list", {"worker_id": w})
    assert status == 200 and listed["data"]["count"] == 0
    await _no_session(client, w)


async def test_the_message_names_the_setting_its_ceiling_and_how_to_raise_it(api: Api) -> None:
    body = {"worker_id": new_sandbox_id("m"), "resource_type": "bash",
            "session_config": {"memory_mb": 65536}}  # fmt: skip
    _, answer = await api.post("plain", "/api/v1/session/create", body)
    assert answer["message"] == (
        "memory_mb 65536 is above what this API key may ask (1024); the operator can raise it "
        "with the key's option memory_mb=65536 in the keys file"
    )
    assert answer["data"] == {"setting": "memory_mb", "asked": 65536, "allowed": 1024}


async def test_a_key_allowed_more_gets_it_up_to_its_ceiling(api: Api, client: Client) -> None:
    w = new_sandbox_id("roomy")
    roomy = {"network": True, "memory_mb": 2048, "processes": 512, "workspace_mb": 2048}
    body = {"worker_id": w, "resource_type": "bash", "session_config": roomy}
    status, answer = await api.post("roomy", "/api/v1/session/create", body)
    assert status == 200 and answer["code"] == 0, answer
    session_id = answer["data"]["session_id"]
    limits = "ulimit -v; ulimit -u; df -m --output=size /workspace | tail -1"
    run = {"worker_id": w, "action": "bash:run", "params": {"command": limits}}
    status, ran = await api.post("roomy", "/api/v1/execute", run)
    assert status == 200, ran
    assert ran["data"]["stdout"].split() == [str(2048 * 1024), "512", "2048"], ran

    # Past its ceiling: refused before anything changes; the current instance stays.
    wider: list[dict[str, Any]] = [{**roomy, "memory_mb": 4096}, {"isolation": "none"}]
    for config in wider:
        body = {"worker_id": w, "resource_type": "bash", "config": config}
        status, answer = await api.post("roomy", "/api/v1/session/reinitialize", body)
        assert status == 403 and answer["code"] == ErrorCode.PERMISSION_DENIED, answer
    status, ran = await api.post("roomy", "/api/v1/execute", run)
    assert ran["meta"]["session_id"] == session_id, ran

    batch = {"worker_id": w, "resource_configs": {
        "code": {"content": {"tmp_mb": 4096}}, "bash": {"content": roomy}}}  # fmt: skip
    status, answer = await api.post("roomy", "/api/v1/init/batch", batch)
    assert status == 207, answer
    refused = answer["data"]["results"]["code"]
    assert refused["code"] == ErrorCode.PERMISSION_DENIED and "tmp_mb 4096" in refused["message"]
    await _no_session(client, w, "code")
    other = new_sandbox_id("r")
    resource = {"worker_id": other, "resource_type": "bash", "init_config": {"processes": 1024}}
    status, answer = await api.post("roomy", "/api/v1/init/resource", resource)
    assert status == 403 and "processes 1024 is above" in answer["message"], answer
    await _no_session(client, other)


# --- item 1: the worker's own ceiling, whatever the client ---------------------------------------


async def test_the_worker_refuses_what_its_operator_did_not_allow(
    client: Client, jail_queue: tuple[str, WorkerProcess]
) -> None:
    box = Sandbox(new_sandbox_id("direct"), client=client, task_queue=jail_queue[0])
    refused: list[tuple[dict[str, Any], str]] = [
        ({"memory_mb": 4096}, "memory_mb 4096 is above what this worker allows (2048)"),
        ({"isolation": "none"}, "isolation 'none' (no sandbox) is not what this worker allows"),
        ({"tmp_mb": 512}, "the worker setting --session-allow tmp_mb=512"),
    ]
    for config, words in refused:
        started = time.monotonic()
        created = await box.create_session("bash", config)
        took = time.monotonic() - started
        assert created["code"] == ErrorCode.PERMISSION_DENIED, created
        assert words in created["message"], created
        assert took < 10, f"refused after {took:.1f} s: retried?"
        await box.destroy_session("bash")
    # Invalid is still invalid (4007), not "not allowed".
    invalid = await box.create_session("bash", {"processes": 100000})
    assert invalid["code"] == ErrorCode.INITIALIZE_FAILED, invalid
    assert "outside 16..4096" in invalid["message"]
    await box.destroy_session("bash")

    # What the operator allowed works; a reinitialize past it keeps the current instance.
    created = await box.create_session("bash", {"memory_mb": 2048, "network": True})
    assert created["status"] == "success", created
    again = await box.reinitialize("bash", {"memory_mb": 4096})
    assert again["status"] == "error" and again["code"] == ErrorCode.PERMISSION_DENIED, again
    ran = await box.execute("bash:run", {"command": "ulimit -v"})
    assert ran["data"]["stdout"] == f"{2048 * 1024}\n"
    assert ran["meta"]["session_id"] == created["session_id"]
    await box.destroy_session("bash")


async def test_the_mcp_server_refuses_configs_past_its_allowance(
    client: Client, jail_queue: tuple[str, WorkerProcess]
) -> None:
    gateway = SessionGateway(client, task_queue=jail_queue[0])
    too_much: list[tuple[dict[str, dict[str, Any]], JailCeiling | None]] = [
        ({"bash": {"network": True}}, None),
        ({"bash": {"isolation": "none"}}, parse_allow("isolation=none")),
    ]
    for configs, allow in too_much:
        with pytest.raises(ValueError, match="configs\\['bash'\\]: (network|isolation)"):
            SessionsMCPServer(gateway, configs=configs, allow=allow)
    server = SessionsMCPServer(
        gateway, configs={"bash": {"network": True}}, allow=parse_allow("network")
    )
    sandbox_id = new_sandbox_id("mcp")
    answer = await server.call_tool("bash_run", {"command": "echo hi", "sandbox_id": sandbox_id})
    assert not answer.is_error and answer.structured_content["data"]["stdout"] == "hi\n"
    server.configs["bash"] = {"memory_mb": 4096}  # a config changed after the start
    other = new_sandbox_id("mcp")
    refused = await server.call_tool("bash_run", {"command": "echo hi", "sandbox_id": other})
    assert refused.is_error and refused.structured_content["code"] == ErrorCode.PERMISSION_DENIED
    assert "memory_mb 4096 is above what this MCP server allows" in str(refused.structured_content)
    await _no_session(client, other)
    await (await gateway.sandbox(sandbox_id, None)).destroy_session(None)


# --- item 2: network without the host ------------------------------------------------------------


def _host_listeners() -> dict[str, set[int]]:
    """TCP ports the host listens on, by family, that a process on its loopback could reach."""
    found: dict[str, set[int]] = {"ipv4": set(), "ipv6": set()}
    for family, table in (("ipv4", "/proc/net/tcp"), ("ipv6", "/proc/net/tcp6")):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN, on any address (the loopback's or all of them)
                found[family].add(int(local.rsplit(":", 1)[1], 16))
    return found


_PROBE = """
import json, socket
def probe(family, address):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(address)
        return "open"
    except OSError as exc:
        return type(exc).__name__
    finally:
        s.close()
reached = []
for port in PORTS4:
    for host in ("127.0.0.1", "10.0.2.2", "10.0.2.3"):
        if host == "10.0.2.3" and port == 53:
            continue  # the stack's DNS forward (to the host's resolvers, not its loopback)
        if probe(socket.AF_INET, (host, port)) == "open":
            reached.append(f"{host}:{port}")
for port in PORTS6:
    if probe(socket.AF_INET6, ("::1", port)) == "open":
        reached.append(f"[::1]:{port}")
abstract = probe(socket.AF_UNIX, ABSTRACT)
out = socket.create_connection((HOST, OUT_PORT), 5)
greeting = out.recv(16).decode()
out.sendall(b"hi from the sandbox\\n")
out.close()
json.dumps({"reached": reached, "abstract": abstract, "greeting": greeting,
            "resolv": open("/etc/resolv.conf").read()})
"""


@pytest.mark.skipif(HOST is None, reason="no non-loopback address to reach out to")
async def test_a_session_with_network_reaches_out_but_never_the_host(
    api: Api, address: str, client: Client, jail_queue: tuple[str, WorkerProcess]
) -> None:
    assert HOST is not None
    lines: list[bytes] = []

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong\n")
        await writer.drain()
        lines.append(await reader.readline())
        writer.close()

    outside = await asyncio.start_server(greet, HOST, 0)  # the host's own, non-loopback address

    async def secret(request: web.Request) -> web.Response:
        return web.Response(text="host secret")

    page = web.Application()
    page.router.add_get("/", secret)
    runner = web.AppRunner(page)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # an HTTP server on the host's loopback
    await site.start()
    http_port = runner.addresses[0][1]
    abstract = "\0jail-" + uuid.uuid4().hex  # an abstract unix socket, like an X display's
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(abstract)
    listener.listen()
    try:
        ports = _host_listeners()
        temporal_port = int(address.rsplit(":", 1)[1])
        assert {temporal_port, http_port, api.port} <= ports["ipv4"], ports
        with socket.create_connection(("127.0.0.1", http_port), 2):
            pass  # reachable from the host itself: the sandbox is what stands in the way
        box = Sandbox(new_sandbox_id("net"), client=client, task_queue=jail_queue[0])
        assert (await box.create_session("code", {"network": True}))["status"] == "success"
        code = (
            f"PORTS4 = {sorted(ports['ipv4'])!r}\nPORTS6 = {sorted(ports['ipv6'])!r}\n"
            f"ABSTRACT = {abstract!r}\nHOST = {HOST!r}\n"
            f"OUT_PORT = {outside.sockets[0].getsockname()[1]}\n" + _PROBE
        )
        cell = await box.execute("code:execute", {"code": code, "timeout": 120})
        assert cell["code"] == 0 and cell["data"]["error"] is None, cell
        seen = json.loads(ast.literal_eval(cell["data"]["result"]))
        print(f"probed {len(ports['ipv4'])} IPv4 and {len(ports['ipv6'])} IPv6 host ports")
        assert seen["reached"] == [], seen
        assert seen["abstract"] == "ConnectionRefusedError", seen
        assert seen["greeting"] == "pong\n" and lines == [b"hi from the sandbox\n"], seen
        assert seen["resolv"] == "nameserver 10.0.2.3\n"
        await box.destroy_session("code")
    finally:
        listener.close()
        await runner.cleanup()
        outside.close()


async def test_the_network_stack_ends_with_its_session(
    client: Client, jail_queue: tuple[str, WorkerProcess]
) -> None:
    queue, worker = jail_queue
    box = Sandbox(new_sandbox_id("stack"), client=client, task_queue=queue)
    before = set(children_named(worker.pid, "slirp4netns"))
    # A config of this test's own: one the worker's warm pool keeps no ready instance of.
    config = {"network": True, "nice": 13}
    created = await box.create_session("bash", config)
    assert created["status"] == "success", created
    mine = set(children_named(worker.pid, "slirp4netns")) - before
    assert len(mine) == 1, mine
    assert (await box.create_session("code"))["status"] == "success"  # no network: no stack
    assert set(children_named(worker.pid, "slirp4netns")) - before == mine
    await box.destroy_session("bash")
    for _ in range(50):
        if not any(map(running, mine)):
            break
        await asyncio.sleep(0.1)
    assert not any(map(running, mine)), "the network stack outlived its session"
    await box.destroy_session("code")
