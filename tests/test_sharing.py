"""Sessions are shared by sandbox id, isolated between sandboxes, and pinned to their worker."""

from __future__ import annotations

import asyncio
import json
import sys

from temporalio.client import Client

from client import Sandbox
from tests.conftest import new_sandbox_id
from tests.processes import ROOT, WorkerProcess


async def test_two_clients_with_one_sandbox_id_share_sessions(client: Client, worker) -> None:
    sandbox_id = new_sandbox_id()
    a = Sandbox(sandbox_id, client=client)
    b = Sandbox(sandbox_id, client=client)
    created = await a.create_session("bash")
    await a.execute("bash:run", {"command": "export SHARED=from-a"})
    seen = await b.execute("bash:run", {"command": "echo $SHARED"})
    assert seen["data"]["stdout"] == "from-a\n"
    assert seen["meta"]["session_id"] == created["session_id"]
    assert seen["meta"]["temporary_session"] is False
    listed = await b.list_sessions()
    assert [s["session_id"] for s in listed["sessions"]] == [created["session_id"]]
    await b.destroy_session("bash")


async def test_a_client_in_another_process_uses_the_same_session(
    client: Client, worker, address: str
) -> None:
    sandbox_id = new_sandbox_id()
    a = Sandbox(sandbox_id, client=client)
    created = await a.create_session("bash")
    await a.execute("bash:run", {"command": "export FROM_PARENT=1"})
    script = (
        "import asyncio, json, sys\n"
        "from client import Sandbox\n"
        "async def main():\n"
        f"    sb = Sandbox({sandbox_id!r}, {address!r})\n"
        "    await sb.start()\n"
        "    r = await sb.execute('bash:run', {'command': 'echo $FROM_PARENT'})\n"
        "    print(json.dumps(r), flush=True)\n"
        "asyncio.run(main())\n"
        # The SDK's Rust runtime can abort an exiting interpreter ("PyGILState_Release ...
        # finalizing"); the answer is printed by then, so leave without finalizing.
        "import os; os._exit(0)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["data"]["stdout"] == "1\n"
    assert result["meta"]["session_id"] == created["session_id"]
    await a.destroy_session("bash")


async def test_two_sandboxes_never_see_each_other(client: Client, worker) -> None:
    a = Sandbox(new_sandbox_id(), client=client)
    b = Sandbox(new_sandbox_id(), client=client)
    await a.create_session("bash")
    await a.execute("bash:run", {"command": "export ONLY_A=1"})
    await b.create_session("bash")
    seen = await b.execute("bash:run", {"command": "echo ${ONLY_A:-unset}"})
    assert seen["data"]["stdout"] == "unset\n"
    assert [s["sandbox_id"] for s in (await a.list_sessions())["sessions"]] == [a.sandbox_id]
    assert [s["sandbox_id"] for s in (await b.list_sessions())["sessions"]] == [b.sandbox_id]
    await a.shutdown_server()
    assert (await a.list_sessions())["sessions"] == []
    assert len((await b.list_sessions())["sessions"]) == 1
    await b.shutdown_server()


async def test_every_call_reaches_the_worker_that_holds_the_instance(
    client: Client, worker: WorkerProcess, address: str
) -> None:
    second = await WorkerProcess.start(address)
    try:
        sandbox = Sandbox(new_sandbox_id(), client=client)
        created = await sandbox.create_session("testkit")
        assert created["worker"] in (worker.queue, second.queue)
        pids = set()
        shell_pids = set()
        await sandbox.create_session("bash")
        for _ in range(20):
            r = await sandbox.execute("testkit:pid", {})
            assert r["code"] == 0
            pids.add((r["data"]["pid"], r["data"]["instance_pid"]))
            s = await sandbox.execute("bash:run", {"command": "readlink /proc/self/ns/pid"})
            shell_pids.add(s["data"]["stdout"])
        assert len(pids) == 1
        ((pid, instance_pid),) = pids
        assert pid == instance_pid
        assert len(shell_pids) == 1
        await sandbox.shutdown_server()
    finally:
        await second.stop()
