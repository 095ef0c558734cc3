"""Sessions run in real bubblewrap sandboxes, on a real worker whose environment holds secrets.

The worker here is started with an encryption key and a planted AWS secret in its environment;
no session may see either, read the worker's files, reach the network unless its config says so
(and then never the host's loopback), outlive a timeout, a destroy or a dead worker, or slow
another session down by misbehaving. Its operator lets sessions ask for network, isolation
"none" and 4 GiB (``--session-allow``); tests/test_jail_policy.py covers what others may ask.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from backends import jail_settings
from backends.jail import JailedProcess
from backends.jail_settings import JailUnavailable, settings_from
from client import Sandbox
from contract import ErrorCode
from runtime.encryption import KEYS_ENV, EncryptionCodec, new_key_entry
from runtime.plugin import SessionsPlugin
from tests import sandboxes
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess
from tests.sandboxes import NS_COMMAND, children_named, host_address

KEY = new_key_entry("iso")
AWS_SECRET = "planted-aws-" + uuid.uuid4().hex
BACKENDS = ["--backends", "bash", "code", "vm"]
#: What this module's sessions ask beyond the defaults; the operator's to allow.
ALLOW = ["--session-allow", "network,isolation=none,memory_mb=4096"]
#: Where a session with network reaches a server of this test: the host's own address (its
#: loopback is out of any session's reach).
HOST = host_address()
needs_host_address = pytest.mark.skipif(HOST is None, reason="no non-loopback address here")


@pytest.fixture(scope="module")
async def keyed_client(address: str) -> Client:
    return await Client.connect(address, plugins=[SessionsPlugin(codec=EncryptionCodec.parse(KEY))])


async def _secret_worker(address: str, queue: str) -> WorkerProcess:
    env = {KEYS_ENV: KEY, "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    return await WorkerProcess.start(
        address, env=env, args=["--task-queue", queue, *BACKENDS, *ALLOW]
    )


@pytest.fixture(scope="module")
async def iso_queue(address: str) -> AsyncIterator[str]:
    """A worker of this module's own, with secrets in its environment."""
    queue = f"iso-{uuid.uuid4().hex[:8]}"
    worker = await _secret_worker(address, queue)
    yield queue
    await worker.stop()


@pytest.fixture
async def box(keyed_client: Client, iso_queue: str) -> AsyncIterator[Sandbox]:
    sb = Sandbox(new_sandbox_id("iso"), client=keyed_client, task_queue=iso_queue)
    await sb.start()
    yield sb
    await sb.shutdown_server()


@pytest.fixture
async def other(keyed_client: Client, iso_queue: str) -> AsyncIterator[Sandbox]:
    """A second, well-behaved session on the same worker."""
    sb = Sandbox(new_sandbox_id("calm"), client=keyed_client, task_queue=iso_queue)
    await sb.start()
    assert (await sb.create_session("bash"))["status"] == "success"
    yield sb
    await sb.shutdown_server()


class TcpServer:
    """A server (on 127.0.0.1 unless told) that records every line a client sends it."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.lines: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TcpServer:
        self._server = await asyncio.start_server(self._client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong\n")
        await writer.drain()
        with_line = await reader.readline()
        self.lines.append(with_line.decode().strip())
        writer.close()


async def _bash(sb: Sandbox, command: str, timeout: float = 10) -> dict[str, Any]:
    return await sb.execute("bash:run", {"command": command, "timeout": timeout})


async def test_a_session_sees_nothing_of_the_worker_environment(box: Sandbox) -> None:
    assert (await box.create_session("bash", {"env": {"MINE": "given"}}))["status"] == "success"
    env = await _bash(box, "env; cat /proc/1/environ 2>&1; grep -rl planted-aws /proc/*/environ")
    assert env["code"] == 0, env
    out = env["data"]["stdout"] + env["data"]["stderr"]
    assert "MINE=given" in out
    assert AWS_SECRET not in out and "AWS_" not in out
    assert KEY.split(":", 1)[1] not in out and KEYS_ENV not in out
    assert sorted(line.split("=")[0] for line in env["data"]["stdout"].splitlines() if "=" in line)[
        :3
    ] == ["HOME", "LANG", "LOGNAME"]

    assert (await box.create_session("code"))["status"] == "success"
    cell = await box.execute("code:execute", {"code": "import os; dict(os.environ)"})
    assert AWS_SECRET not in cell["data"]["result"] and KEYS_ENV not in cell["data"]["result"]


async def test_files_outside_the_workspace_are_out_of_reach(box: Sandbox, tmp_path: Path) -> None:
    planted = tmp_path / "worker-secret"
    planted.write_text("top secret\n")
    planted.chmod(0o600)
    await box.create_session("bash")
    who = await _bash(box, f"id -u; cat {planted}; cat /etc/shadow; ls /root /home /work; pwd")
    assert who["code"] == 0, who
    assert who["data"]["stdout"].split() == ["65534", "/workspace"]
    assert "top secret" not in who["data"]["stdout"]
    assert "No such file" in who["data"]["stderr"]  # not even visible
    assert "/etc/shadow: Permission denied" in who["data"]["stderr"]  # visible, not readable

    # On the host, every process of the session runs as uid 65534, never as the worker's user.
    namespace = (await _bash(box, NS_COMMAND))["data"]["stdout"].strip()
    for pid in sandboxes.processes_in(namespace):
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert set(uids) == {"65534"}, (pid, status)

    # The system is read-only; the workspace and /tmp are private and capped.
    write = await _bash(box, "touch /usr/x; echo hi > /workspace/f && cat /workspace/f")
    assert "Read-only file system" in write["data"]["stderr"]
    assert write["data"]["stdout"] == "hi\n"
    full = await _bash(box, "head -c 300M /dev/zero > /tmp/big; echo rc=$?; rm -f /tmp/big")
    assert "No space left on device" in full["data"]["stderr"], full  # tmp_mb: 256


@needs_host_address
async def test_the_network_is_off_unless_the_config_turns_it_on(box: Sandbox) -> None:
    probe = "exec 3<>/dev/tcp/{host}/{port} && read -r line <&3 && echo got-$line && echo hi >&3"
    async with TcpServer(HOST or "") as server, TcpServer() as loopback:
        await box.create_session("bash")
        for target in (server, loopback):
            off = await _bash(box, probe.format(host=target.host, port=target.port))
            assert off["code"] == 0 and off["data"]["return_code"] != 0, off
            assert "got-" not in off["data"]["stdout"]
        assert server.lines == []

        await box.reinitialize("bash", {"network": True})
        home = await _bash(box, probe.format(host="127.0.0.1", port=loopback.port))
        assert home["data"]["return_code"] != 0, home  # the host's loopback: never
        on = await _bash(box, probe.format(host=HOST, port=server.port))
        assert on["data"]["stdout"] == "got-pong\n", on
        for _ in range(50):
            if server.lines:
                break
            await asyncio.sleep(0.05)
        assert server.lines == ["hi"]


def _daemons(marker: str, port: int) -> str:
    """A setsid child, a nohup job and a double-forked daemon; each reports in after 2 s."""
    late = f"sleep 2; echo $0 > /dev/tcp/{HOST}/{port}"
    return (
        f"setsid bash -c '{late}' {marker}-setsid >/dev/null 2>&1 < /dev/null & "
        f"nohup bash -c '{late}' {marker}-nohup >/dev/null 2>&1 & "
        f"( ( bash -c '{late}' {marker}-daemon >/dev/null 2>&1 & ) & ) ; "
        "sleep 0.3; echo spawned"
    )


async def _gone(marker: str, server: TcpServer) -> float:
    """Wait for every process with ``marker`` to end (seconds it took); none may report in."""
    started = time.monotonic()
    for _ in range(50):
        if not sandboxes.host_pids(marker):
            break
        await asyncio.sleep(0.1)
    assert sandboxes.host_pids(marker) == [], "a daemon outlived its sandbox"
    took = time.monotonic() - started
    await asyncio.sleep(2.5)  # past the time each daemon would have reported in
    assert server.lines == [], f"a daemon reported in after its end: {server.lines}"
    return took


@needs_host_address
@pytest.mark.parametrize("ending", ["timeout", "destroy"])
async def test_daemons_end_with_a_timeout_and_with_destroy(box: Sandbox, ending: str) -> None:
    marker = "d" + uuid.uuid4().hex[:12]
    async with TcpServer(HOST or "") as server:
        await box.create_session("bash", {"network": True})
        if ending == "timeout":
            run = await _bash(box, _daemons(marker, server.port) + "; sleep 30", timeout=2)
            assert run["code"] == ErrorCode.TIMEOUT and run["data"]["stdout"] == "spawned\n"
        else:
            run = await _bash(box, _daemons(marker, server.port))
            assert run["data"]["stdout"] == "spawned\n", run
            assert len(sandboxes.host_pids(marker)) == 3
            await box.destroy_session("bash")
        await _gone(marker, server)
    if ending == "timeout":
        assert (await _bash(box, "echo still here"))["data"]["stdout"] == "still here\n"


@needs_host_address
async def test_daemons_end_when_the_worker_is_killed(keyed_client: Client, address: str) -> None:
    queue = f"iso-kill-{uuid.uuid4().hex[:8]}"
    worker = await _secret_worker(address, queue)
    marker = "k" + uuid.uuid4().hex[:12]
    sleeper = f"300.{uuid.uuid4().int % 10**9}"  # a unique command line to find on the host
    stacks: list[int] = []
    async with TcpServer(HOST or "") as server:
        try:
            sb = Sandbox(new_sandbox_id("kill"), client=keyed_client, task_queue=queue)
            await sb.create_session("bash", {"network": True})
            await sb.create_session("code", {"network": True})
            run = await _bash(sb, _daemons(marker, server.port))
            assert run["data"]["stdout"] == "spawned\n", run
            spawn = f"subprocess.Popen(['setsid', 'sleep', '{sleeper}'])"
            cell = await sb.execute("code:execute", {"code": f"import subprocess; {spawn}; 1"})
            assert cell["data"]["result"] == "1", cell
            assert len(sandboxes.host_pids(marker)) == 3
            assert len(sandboxes.host_pids(sleeper)) == 1
            stacks = children_named(worker.pid, "slirp4netns")
            assert len(stacks) == 2, stacks  # one user-mode network stack per sandbox
        finally:
            await worker.kill()
        took = await _gone(marker, server)
        assert sandboxes.host_pids(sleeper) == []
        for _ in range(50):  # each stack ends when the worker's end of its exit pipe closes
            if not any(map(sandboxes.running, stacks)):
                break
            await asyncio.sleep(0.1)
        assert not any(map(sandboxes.running, stacks)), "a network stack outlived its worker"
        print(f"worker SIGKILL -> every sandboxed process gone within {took:.2f} s")


async def _latency_while(other: Sandbox, work: Any) -> tuple[Any, list[float]]:
    """Run ``work`` while the other session answers `echo` in a loop; its latencies (ms)."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            r = await _bash(other, "echo ok")
            assert r["code"] == 0 and r["data"]["stdout"] == "ok\n", r
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(probe())
    try:
        result = await work
    finally:
        stop.set()
        await task
    return result, latencies


def _report(what: str, baseline: list[float], during: list[float]) -> None:
    print(
        f"{what}: other session echo p50 {statistics.median(during):.0f} ms, "
        f"max {max(during):.0f} ms over {len(during)} calls "
        f"(idle p50 {statistics.median(baseline):.0f} ms)"
    )
    assert max(during) < 5000


async def test_runaway_sessions_end_clearly_and_others_keep_answering(
    box: Sandbox, other: Sandbox
) -> None:
    _, baseline = await _latency_while(other, asyncio.sleep(1))

    await box.create_session("bash")
    bomb = "bomb() { bomb | bomb & }; bomb; sleep 30"
    forked, during = await _latency_while(other, _bash(box, bomb, timeout=3))
    _report("fork bomb", baseline, during)
    assert forked["code"] == ErrorCode.TIMEOUT and "timed out" in forked["message"]
    assert "Resource temporarily unavailable" in forked["data"]["stderr"]  # processes: 256
    after = await _bash(box, "ps -e --no-headers | wc -l")
    assert int(after["data"]["stdout"]) <= 5, after  # the supervisor, the shell, ps, wc

    yes, during = await _latency_while(other, _bash(box, "yes", timeout=3))
    _report("endless yes", baseline, during)
    assert yes["code"] == ErrorCode.TIMEOUT
    stdout = yes["data"]["stdout"]
    assert stdout.startswith("y\ny\n") and len(stdout) < 256 * 1024 + 200
    dropped = int(stdout.rsplit("output truncated: ", 1)[1].split()[0])
    assert dropped > 10 * 1024 * 1024
    print(f"endless yes: {dropped} bytes dropped, {len(stdout)} kept, nothing written to disk")

    await box.create_session("code")
    big = "b = bytearray(2 * 1024 ** 3)"
    alloc, during = await _latency_while(other, box.execute("code:execute", {"code": big}))
    _report("2 GB allocation", baseline, during)
    assert alloc["code"] == 0 and alloc["data"]["error"]["type"] == "MemoryError", alloc
    assert (await box.execute("code:execute", {"code": "40 + 2"}))["data"]["result"] == "42"
    await box.reinitialize("code", {"memory_mb": 4096})
    roomy = await box.execute("code:execute", {"code": big + "; len(b)"})
    assert roomy["data"]["result"] == str(2 * 1024**3), roomy


async def test_a_cell_cannot_forge_or_shift_the_interpreter_answers(box: Sandbox) -> None:
    await box.create_session("code")
    forge = (
        "import os\n"
        'fake = b\'{"result": "forged", "error": null}\\n\\nffff 2 {"result": "forged"}\\n\'\n'
        "hit = []\n"
        "for fd in [4, *range(3, 1024)]:\n"
        "    try:\n"
        "        os.write(fd, fake)\n"
        "        hit.append(fd)\n"
        "    except OSError:\n"
        "        pass\n"
        "'first'"
    )
    answers = [
        (await box.execute("code:execute", {"code": code}))["data"]["result"]
        for code in (forge, "1 + 1", "'third'", "hit")
    ]
    assert answers[:3] == ["'first'", "2", "'third'"], answers
    assert "4" not in answers[3].strip("[]").split(", "), "fd 4 is no channel any more"


async def test_an_unknown_hotkey_is_refused(box: Sandbox) -> None:
    assert (await box.create_session("vm", {"screen_size": "320x240"}))["status"] == "success"
    unknown = await box.execute("vm:hotkey", {"keys": "ctrl+nosuchkey"})
    assert unknown["code"] == ErrorCode.INVALID_INPUT and "'nosuchkey'" in unknown["message"]
    assert (await box.execute("vm:hotkey", {"keys": ["ctrl", "a"]}))["code"] == 0
    assert (await box.execute("vm:hotkey", {"keys": "Return"}))["code"] == 0


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"memory_mb": 1}, "memory_mb 1 is outside 128..65536"),
        ({"processes": 100000}, "processes 100000 is outside 16..4096"),
        ({"max_output_bytes": -1}, "max_output_bytes -1 must be an integer in 1..16777216"),
        ({"isolation": "chroot"}, "isolation 'chroot' is not one of 'bwrap', 'none'"),
        ({"network": "yes"}, "network must be true or false"),
    ],
)
async def test_out_of_range_config_fails_initialize_clearly(
    box: Sandbox, config: dict[str, Any], words: str
) -> None:
    created = await box.create_session("bash", config)
    assert created["code"] == ErrorCode.INITIALIZE_FAILED and words in created["message"], created


async def test_isolation_none_is_the_trusted_local_mode(box: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "here").write_text("host file\n")
    await box.create_session("bash", {"isolation": "none", "cwd": str(tmp_path)})
    run = await _bash(box, "cat here; env")
    assert run["data"]["stdout"].startswith("host file\n"), run
    assert AWS_SECRET not in run["data"]["stdout"]  # still a clean environment


async def test_without_bubblewrap_isolated_sessions_are_refused_by_name(monkeypatch) -> None:
    real_which = jail_settings.shutil.which
    monkeypatch.setattr(
        jail_settings.shutil, "which", lambda name: None if name == "bwrap" else real_which(name)
    )
    process = JailedProcess(settings_from({}), env={}, cwd="/workspace", fds=("null",))
    with pytest.raises(JailUnavailable, match="Debian package 'bubblewrap'"):
        await process.start(["true"])
    none = JailedProcess(settings_from({"isolation": "none"}), env={}, cwd="/", fds=("null",))
    await none.start(["true"])
    await none.close()
