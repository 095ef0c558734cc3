"""``restore="replay"`` for code sessions: the cells that succeeded run again in the fresh
interpreter after the worker holding the session is killed, so the names they defined are back;
a cell marked ``replay=False`` and a failed cell are not; side effects run again."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from backends.code import REPLAY_MAX_BYTES, _record
from client import Sandbox
from tests.conftest import new_sandbox_id
from tests.processes import WorkerProcess, start_on

CELLS = [
    "x = 41",
    "import os, math\ndef f(v):\n    return v + 1",
    "seen = []\nseen.append(len(seen))",
    # A side effect: the replay appends a second line to the restored file.
    "open('/workspace/log.txt', 'a').write('ran\\n')",
    "os.makedirs('/workspace/d', exist_ok=True)\nos.chdir('/workspace/d')",
]


async def _ok(sandbox: Sandbox, code: str, **params: Any) -> dict[str, Any]:
    answer = await sandbox.execute("code:execute", {"code": code, **params})
    assert answer["code"] == 0 and answer["data"]["error"] is None, answer
    return dict(answer["data"])


async def test_names_defined_before_a_sigkill_are_back_after_it(
    client: Client, address: str, queue: str, workers: list[WorkerProcess]
) -> None:
    holder = await start_on(address, queue, workers)
    sandbox = Sandbox(new_sandbox_id("replay"), client=client, task_queue=queue)
    created = await sandbox.create_session("code", {"restore": "replay"})
    assert created["status"] == "success" and created["worker"] == holder.queue, created
    for code in CELLS:
        await _ok(sandbox, code)
    await _ok(sandbox, "secret = 'not replayed'", replay=False)
    failed = await sandbox.execute("code:execute", {"code": "y = 1 / 0"})
    assert failed["data"]["error"]["type"] == "ZeroDivisionError", failed

    successor = await start_on(address, queue, workers)
    await holder.kill()
    probe = "(f(x), seen, 'secret' in dir(), 'y' in dir(), os.getcwd(), math.pi > 3)"
    for _ in range(3):  # what a caller does: call, and call again after a 5014
        answer = await sandbox.execute("code:execute", {"code": probe})
        if answer["code"] == 0:
            break
        assert answer["code"] == 5014, answer
    data = answer["data"]
    assert data["result"] == "(42, [0], False, False, '/workspace/d', True)", answer
    report = data["replay"]
    assert (report["cells"], report["replayed"], report["failed"]) == (5, 5, None), report
    log = await sandbox.execute("code:read_file", {"path": "log.txt"})
    assert log["data"]["content"] == "ran\nran\n", log  # the side effect ran again
    view = await sandbox.describe_session("code")
    assert view is not None and view["worker"] == successor.queue

    # Cells after the move join the log: a second move replays both sessions' worth.
    await _ok(sandbox, "z = f(x) * 2")
    await start_on(address, queue, workers)
    await successor.kill()
    for _ in range(3):
        answer = await sandbox.execute("code:execute", {"code": "(z, seen)"})
        if answer["code"] == 0:
            break
        assert answer["code"] == 5014, answer
    assert answer["data"]["result"] == "(84, [0])", answer
    # The first five, the probe (it succeeded: any cell that does is kept) and z's.
    assert answer["data"]["replay"]["replayed"] == 7, answer["data"]["replay"]
    again = await _ok(sandbox, "z")
    assert "replay" not in again  # said once, on the first answer after the restore
    await sandbox.destroy_session("code")


def test_past_the_cap_nothing_is_kept_rather_than_a_part() -> None:
    kept: dict[str, Any] = {"cells": [], "bytes": 0, "overflow": False, "version": 0}
    _record(kept, "a = 1", 30)
    assert kept["cells"] == [{"code": "a = 1", "timeout": 30}] and kept["version"] == 1
    _record(kept, "b = '" + "x" * REPLAY_MAX_BYTES + "'", 30)
    assert kept["overflow"] is True and kept["cells"] == [], kept
    _record(kept, "c = 3", 30)
    assert kept["cells"] == [], kept


async def test_a_fork_of_a_replay_session_has_the_parents_names(
    client: Client, worker: WorkerProcess
) -> None:
    parent = Sandbox(new_sandbox_id("replay-fork"), client=client)
    created = await parent.create_session("code", {"restore": "replay"})
    assert created["status"] == "success", created
    await _ok(parent, "import json\nstate = {'step': 1}")
    children = await parent.fork("code", 2)
    try:
        first, second = children
        await _ok(first, "state['step'] = 2")  # forks are independent of each other
        mine = await _ok(second, "json.dumps(state)")
        assert mine["result"] == "'{\"step\": 1}'", mine
        assert mine["replay"]["replayed"] == 1, mine
        assert (await _ok(first, "state['step']"))["result"] == "2"
        assert (await _ok(parent, "state['step']"))["result"] == "1"
    finally:
        for sandbox in (*children, parent):
            await sandbox.destroy_session("code")
