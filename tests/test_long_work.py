"""Long work in a session: partial output, input, background processes, files, a durable workspace.

Real server, real workers. A command that goes quiet answers early (``no_output_timeout``) and
later calls collect the rest, send it input or interrupt it; a background server lives beside
the shell until destroy; a 20 MB file goes in and out without filling history; and the files a
session wrote come back after its worker is killed, after a graceful migration, after pause and
resume, and from a checkpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from backends.bash import BashBackend
from backends.host import BackendHost
from client import Sandbox, SessionManager
from contract import ErrorCode
from tests import sandboxes
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess, start_on
from tests.sandboxes import NS_COMMAND

TWENTY_MB = 20 * 1024 * 1024


async def _bash(sb: Sandbox, command: str, **params: Any) -> dict[str, Any]:
    return await sb.execute("bash:run", {"command": command, **params})


async def test_a_quiet_command_answers_early_and_later_calls_collect_the_rest(
    sandbox: Sandbox,
) -> None:
    await sandbox.create_session("bash")
    first = await _bash(sandbox, "echo one; sleep 2; echo two", no_output_timeout=0.5)
    assert first["code"] == 0, first
    assert first["data"]["running"] is True and first["data"]["return_code"] is None
    assert first["data"]["stdout"] == "one\n"

    busy = await _bash(sandbox, "echo another")
    assert busy["code"] == ErrorCode.INVALID_INPUT and "still running" in busy["message"]

    rest = await _bash(sandbox, "", timeout=10, no_output_timeout=5)
    assert rest["code"] == 0, rest
    assert rest["data"] == {**rest["data"], "stdout": "two\n", "return_code": 0, "running": False}
    nothing = await _bash(sandbox, "")
    assert (
        nothing["code"] == ErrorCode.INVALID_INPUT and "no command is running" in nothing["message"]
    )

    # stdin reaches an interactive program; Ctrl-C ends a command, and the shell stays.
    asking = await _bash(sandbox, "export KEPT=1; read x; echo got $x", no_output_timeout=0.3)
    assert asking["data"]["running"] is True
    answered = await sandbox.execute("bash:stdin", {"text": "hello\n", "no_output_timeout": 5})
    assert answered["code"] == 0, answered
    assert answered["data"]["stdout"] == "got hello\n" and answered["data"]["return_code"] == 0
    fed = await _bash(sandbox, "cat > fed.txt; wc -l < fed.txt", no_output_timeout=0.3)
    assert fed["data"]["running"] is True
    ended = await sandbox.execute(
        "bash:stdin", {"text": "a\nb\n", "eof": True, "no_output_timeout": 5}
    )
    assert ended["data"]["stdout"].strip() == "2"
    sleeping = await _bash(sandbox, "sleep 60; echo not-reached", no_output_timeout=0.3)
    assert sleeping["data"]["running"] is True
    stopped = await sandbox.execute("bash:interrupt", {})
    assert stopped["code"] == 0, stopped
    assert stopped["data"]["return_code"] == 130 and "not-reached" not in stopped["data"]["stdout"]
    after = await _bash(sandbox, "echo $KEPT")
    assert after["data"]["stdout"] == "1\n"

    # The hard timeout stays: a quiet command is still killed at its deadline.
    late = await _bash(sandbox, "sleep 30", timeout=1.5, no_output_timeout=0.3)
    assert late["data"]["running"] is True
    killed = await _bash(sandbox, "", timeout=10, no_output_timeout=5)
    assert killed["code"] == ErrorCode.TIMEOUT, killed


async def test_a_background_server_is_reachable_and_ends_with_destroy(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    namespace = (await _bash(sandbox, NS_COMMAND))["data"]["stdout"].strip()
    started = await sandbox.execute(
        "bash:start", {"command": "exec python3 -m http.server 8765 --bind 127.0.0.1"}
    )
    assert started["code"] == 0, started
    handle = started["data"]["handle"]
    fetch = (
        'python3 -c "import urllib.request as u; '
        "print(u.urlopen('http://127.0.0.1:8765/', timeout=2).status)\""
    )

    async def reach() -> dict[str, Any]:
        """Fetch the page, again for up to ~5 s while it does not answer (a loaded machine)."""
        for _ in range(50):
            reached = await _bash(sandbox, fetch)
            if reached["data"]["stdout"].strip() == "200":
                break
            await asyncio.sleep(0.1)
        return reached

    reached = await reach()
    assert reached["data"]["stdout"].strip() == "200", reached
    curl = await _bash(sandbox, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8765/")
    assert curl["data"]["stdout"] == "200"

    # A foreground timeout ends the command's processes, not the background ones.
    assert (await _bash(sandbox, "sleep 10", timeout=0.5))["code"] == ErrorCode.TIMEOUT
    reached = await reach()
    assert reached["data"]["stdout"].strip() == "200", reached

    status = await sandbox.execute("bash:status", {"handle": handle})
    assert status["data"]["status"] == "running" and status["data"]["output_bytes"] > 0, status
    log = await sandbox.execute("bash:output", {"handle": handle, "offset": 0})
    assert '"GET / HTTP/1.1" 200' in log["data"]["output"], log
    # The server logs each request after answering it: a line may land between the two calls.
    assert log["data"]["next_offset"] >= status["data"]["output_bytes"], (status, log)
    assert log["data"]["next_offset"] == len(log["data"]["output"].encode()), log
    listed = await sandbox.execute("bash:status", {})
    assert [p["handle"] for p in listed["data"]["processes"]] == [handle]
    described = await sandbox.describe_session("bash")  # and the session's describe shows it
    assert described is not None
    assert [(p["handle"], p["status"]) for p in described["processes"]] == [(handle, "running")]

    echo = await sandbox.execute("bash:start", {"command": "read line; echo back:$line"})
    other = echo["data"]["handle"]
    await sandbox.execute("bash:stdin", {"handle": other, "text": "ping\n"})
    back = await sandbox.execute("bash:output", {"handle": other, "wait": 5})
    assert back["data"]["output"] == "back:ping\n"

    assert sandboxes.alive(namespace)
    await sandbox.destroy_session("bash")
    assert not sandboxes.alive(namespace), "a background process outlived destroy"


async def test_a_foreground_command_slow_to_die_leaves_background_ones_running(
    sandbox: Sandbox,
) -> None:
    """A killed process can take a while to go (here: freeing the 700 MiB it touched; on a loaded
    machine, waiting to be scheduled). Ending a timed-out command waits for it, instead of
    ending everything in the sandbox, background processes included."""
    await sandbox.create_session("bash")
    started = await sandbox.execute("bash:start", {"command": "exec sleep 1000"})
    handle = started["data"]["handle"]
    big = "python3 -c 'x = bytearray(700 << 20); import time; time.sleep(60)'"
    for _ in range(3):
        timed_out = await _bash(sandbox, big, timeout=2)
        assert timed_out["code"] == ErrorCode.TIMEOUT, timed_out
        status = await sandbox.execute("bash:status", {"handle": handle})
        assert status["data"]["status"] == "running", status
    after = await _bash(sandbox, "echo still here")
    assert after["data"]["stdout"] == "still here\n", after


async def test_a_20_mb_file_round_trips_and_history_stays_small(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    await sandbox.create_session("bash")
    source = tmp_path / "blob.bin"
    source.write_bytes(os.urandom(TWENTY_MB))
    started = time.monotonic()
    uploaded = await sandbox.upload(source, "data/blob.bin")
    up = time.monotonic() - started
    assert uploaded == {**uploaded, "path": "/workspace/data/blob.bin", "size": TWENTY_MB}
    check = await _bash(sandbox, "sha256sum data/blob.bin | cut -d' ' -f1")
    assert check["data"]["stdout"].strip() == hashlib.sha256(source.read_bytes()).hexdigest()

    started = time.monotonic()
    back = tmp_path / "back.bin"
    assert (await sandbox.download("data/blob.bin", back))["size"] == TWENTY_MB
    down = time.monotonic() - started
    assert back.read_bytes() == source.read_bytes()

    history = await sandbox.client.get_workflow_handle(f"{sandbox.sandbox_id}:bash").fetch_history()
    size = sum(HistoryEvent.ByteSize(e) for e in history.events)
    print(f"20 MB: upload {up:.1f}s, download {down:.1f}s, history {size} bytes")
    assert size < 512 * 1024, f"history holds {size} bytes"


async def test_paths_stay_inside_the_workspace(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    await _bash(sandbox, "ln -s /etc out; mkdir -p in; ln -s in inside")
    written = await sandbox.execute("bash:write_file", {"path": "inside/x.txt", "content": "x"})
    assert written["code"] == 0 and written["data"]["path"] == "/workspace/in/x.txt"
    for path in ("../etc/passwd", "/etc/passwd", "out/passwd", "out", "in/../../etc/hosts"):
        for tool, params in (
            ("bash:read_file", {"path": path}),
            ("bash:write_file", {"path": path, "content": "no"}),
            ("bash:list_files", {"path": path}),
        ):
            refused = await sandbox.execute(tool, params)
            assert refused["code"] == ErrorCode.INVALID_INPUT, (tool, path, refused)
    missing = await sandbox.execute("bash:read_file", {"path": "nope.txt"})
    assert missing["code"] == ErrorCode.NOT_FOUND
    gone = await sandbox.execute("bash:remove_file", {"path": "out"})  # the link, not /etc
    assert gone["code"] == 0 and (await _bash(sandbox, "ls /etc/hostname"))["data"]["stdout"]


# --- the durable workspace ----------------------------------------------------------------------


#: Files of several kinds, made by the shell and by the file tools; ``_FILES_CHECK`` prints them.
_FILES_MADE = (
    "mkdir -p proj/src && cd proj && echo 'print(1)' > src/main.py && chmod +x src/main.py && "
    "head -c 300000 /dev/urandom > blob && ln -s src/main.py link && export KEEP=yes"
)
_FILES_CHECK = (
    "cat src/main.py note.txt; stat -c %a src/main.py; readlink link; "
    "sha256sum blob | cut -c1-16; echo $PWD $KEEP"
)


Execute = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def _make_files(execute: Execute) -> str:
    assert (await execute("bash:run", {"command": _FILES_MADE}))["code"] == 0
    note = {"path": "proj/note.txt", "content": "written by write_file\n"}
    assert (await execute("bash:write_file", note))["code"] == 0
    made = await execute("bash:run", {"command": _FILES_CHECK})
    assert "written by write_file" in made["data"]["stdout"], made
    return str(made["data"]["stdout"])


async def test_files_survive_a_killed_worker(
    client: Client, address: str, queue: str, workers: list[WorkerProcess]
) -> None:
    first = await start_on(address, queue, workers)
    sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
    await sandbox.create_session("bash")
    await sandbox.create_session("code")
    expected = await _make_files(sandbox.execute)
    await sandbox.execute("code:execute", {"code": "open('made.txt', 'w').write('by a cell')"})
    await sandbox.execute("code:write_file", {"path": "tool.txt", "content": "by a tool"})
    second = await start_on(address, queue, workers)
    await first.kill()

    lost = await asyncio.gather(
        _bash(sandbox, "true"), sandbox.execute("code:execute", {"code": "1"})
    )
    assert [r["code"] for r in lost] == [ErrorCode.RESOURCE_LOST] * 2, lost
    after = await _bash(sandbox, _FILES_CHECK)
    assert after["data"]["stdout"] == expected
    read = await sandbox.execute(
        "code:execute", {"code": "open('made.txt').read() + ' / ' + open('tool.txt').read()"}
    )
    assert read["data"]["result"] == "'by a cell / by a tool'"
    view = await sandbox.describe_session("bash")
    assert view is not None and view["worker"] == second.queue
    await sandbox.destroy_session()


async def test_files_survive_migration_pause_and_a_checkpoint(
    client: Client, address: str, queue: str, workers: list[WorkerProcess]
) -> None:
    first = await start_on(address, queue, workers)
    manager = SessionManager(client=client, task_queue=queue, admin=True)
    sid = (await manager.create_session("u1", "agent", resource_type="bash")).session_id

    async def execute(tool: str, params: dict[str, Any]) -> dict[str, Any]:
        return await manager.execute(sid, tool, params)

    async def bash(command: str) -> dict[str, Any]:
        return await execute("bash:run", {"command": command})

    expected = await _make_files(execute)

    # SIGTERM: the stopping worker snapshots and releases; the next call lands elsewhere.
    await start_on(address, queue, workers)
    assert await first.stop() == 0
    moved = await bash(_FILES_CHECK)
    assert moved["code"] == 0, moved
    assert moved["data"]["stdout"] == expected

    # Pause releases the instance; resume makes a new one with the files.
    checkpoint = await manager.save_checkpoint(sid, {"turn": 1})
    await bash("echo changed > note.txt; rm blob")
    await manager.set_session_state(sid, "paused")
    await manager.set_session_state(sid, "active")
    resumed = await bash("cat note.txt; ls blob 2>&1 | head -c 20; echo")
    assert resumed["data"]["stdout"].startswith("changed\nls: cannot access"), resumed

    # Resuming from the checkpoint brings the workspace back to it.
    await manager.set_session_state(sid, "paused")
    await manager.set_session_state(sid, "active", checkpoint_id=checkpoint)
    restored = await bash(_FILES_CHECK)
    assert restored["data"]["stdout"] == expected
    await manager.delete_session(sid)


# --- the snapshot's cost, backend alone -----------------------------------------------------------


async def test_a_call_that_changes_nothing_packs_nothing() -> None:
    backend = BashBackend()
    host = BackendHost([backend])
    info = await backend.initialize("w", {})
    try:

        async def call(command: str) -> tuple[dict[str, Any] | None, float]:
            await host.invoke("bash:run", {"command": command}, info)
            started = time.perf_counter()
            snapshot = await backend.snapshot(info)
            return snapshot, (time.perf_counter() - started) * 1000

        first, _ = await call("seq 1 2000 | while read i; do echo $i > f$i; done")
        assert first is not None and first["workspace"]["files"] == 2000
        unchanged = [await call("echo unchanged") for _ in range(10)]
        assert all(snapshot is None for snapshot, _ in unchanged)
        costs = [ms for _, ms in unchanged]
        changed, _ = await call("echo new > f1")
        assert changed is not None and changed["workspace"]["files"] == 2000
        print(
            f"2000 files: snapshot {first['workspace']['bytes_new']} bytes stored in "
            f"{first['workspace']['took_ms']} ms; unchanged: median "
            f"{sorted(costs)[len(costs) // 2]:.2f} ms"
        )
        assert sorted(costs)[len(costs) // 2] < 50
    finally:
        await backend.cleanup("w", info)


async def test_without_a_sandbox_the_files_are_the_start_directory(tmp_path: Path) -> None:
    backend = BashBackend()
    host = BackendHost([backend])
    info = await backend.initialize("w", {"isolation": "none", "cwd": str(tmp_path)})
    try:

        async def call(tool: str, **params: Any) -> Any:
            return await host.invoke(tool, params, info)

        written = await call("bash:write_file", path="t.txt", content="éé")  # 4 bytes
        assert written.data == {"path": str(tmp_path / "t.txt"), "written": 4, "size": 4}
        assert (tmp_path / "t.txt").read_text() == "éé"
        cut = await call("bash:read_file", path="t.txt", length=3)
        assert (cut.data["content"], cut.data["next_offset"], cut.data["eof"]) == ("é", 2, False)
        outside = await call("bash:read_file", path=str(tmp_path.parent / "x"))
        assert outside.code == ErrorCode.INVALID_INPUT
        handle = (await call("bash:start", command="sleep 60")).data["handle"]
        assert (await call("bash:run", command="sleep 5", timeout=0.3)).code == ErrorCode.TIMEOUT
        assert (await call("bash:status", handle=handle)).data["status"] == "running"
        snapshot = await backend.snapshot(info)
        assert snapshot is not None and "workspace" not in snapshot  # off without a sandbox
        assert [p["status"] for p in snapshot["processes"]] == ["running"]
        killed = await call("bash:kill", handle=handle)
        assert killed.data["status"] == "killed" and killed.data["exit_code"] == -15
        assert (await call("bash:remove_file", path="t.txt")).data["removed"] == 1
        assert not (tmp_path / "t.txt").exists()
    finally:
        await backend.cleanup("w", info)
