"""The seed's quick-start flows, through Sandbox, on a real server, worker and shell."""

from __future__ import annotations

import os

from temporalio.client import Client

from client import Sandbox
from tests import sandboxes
from tests.conftest import new_sandbox_id
from tests.sandboxes import NS_COMMAND


async def test_explicit_session_keeps_cwd_across_three_calls(sandbox: Sandbox, tmp_path) -> None:
    created = await sandbox.create_session("bash", {"cwd": str(tmp_path)})
    assert created["status"] == "success"

    first = await sandbox.execute(
        "bash:run", {"command": "mkdir sub && cd sub && export GREETING=hi"}
    )
    second = await sandbox.execute("bash:run", {"command": "pwd; echo $GREETING"})
    third = await sandbox.execute("bash:run", {"command": "echo $$"})

    assert first["code"] == 0 and second["code"] == 0 and third["code"] == 0
    assert second["data"]["stdout"].split() == [str(tmp_path / "sub"), "hi"]
    assert second["data"]["cwd"] == str(tmp_path / "sub")
    ids = {r["meta"]["session_id"] for r in (first, second, third)}
    assert ids == {created["session_id"]}
    assert not any(r["meta"]["temporary_session"] for r in (first, second, third))


async def test_temporary_session_runs_once_and_leaves_nothing(sandbox: Sandbox) -> None:
    result = await sandbox.execute("bash:run", {"command": NS_COMMAND})

    assert result["code"] == 0, result
    assert result["meta"]["temporary_session"] is True
    namespace = result["data"]["stdout"].strip()
    assert not _alive(namespace), "the temporary shell must be gone after the call"
    assert (await sandbox.list_sessions())["sessions"] == []


async def test_concurrent_temporary_calls_never_share_an_instance(sandbox: Sandbox) -> None:
    import asyncio

    # Each shell lives a while, so all five are alive together: the kernel may reuse a pid
    # namespace's number only after that namespace is gone.
    results = await asyncio.gather(
        *(sandbox.execute("bash:run", {"command": f"{NS_COMMAND}; sleep 1"}) for _ in range(5))
    )
    assert all(r["code"] == 0 for r in results), results
    assert len({r["meta"]["session_id"] for r in results}) == 5
    assert len({r["data"]["stdout"] for r in results}) == 5


async def test_refresh_moves_the_deadline(sandbox: Sandbox) -> None:
    created = await sandbox.create_session("bash")
    refreshed = await sandbox.refresh_sessions("bash")
    assert refreshed["status"] == "success"
    assert refreshed["refreshed"]["bash"]["deadline"] > created["deadline"]


async def test_reinitialize_makes_a_new_instance_with_the_new_config(
    sandbox: Sandbox, tmp_path
) -> None:
    await sandbox.create_session("bash", {"cwd": "/"})
    result = await sandbox.reinitialize("bash", {"cwd": str(tmp_path)})

    assert result["status"] == "success"
    assert result["old_session_id"] != result["new_session_id"]
    assert result["config_applied"] == {"cwd": str(tmp_path)}
    run = await sandbox.execute("bash:run", {"command": "pwd"})
    assert run["data"]["stdout"].strip() == str(tmp_path)
    assert run["meta"]["session_id"] == result["new_session_id"]


async def test_list_and_destroy_sessions(sandbox: Sandbox) -> None:
    await sandbox.create_session(["bash"])
    listed = await sandbox.list_sessions()
    assert [(s["resource_type"], s["status"]) for s in listed["sessions"]] == [("bash", "active")]

    pid = (await sandbox.execute("bash:run", {"command": NS_COMMAND}))["data"]["stdout"].strip()
    destroyed = await sandbox.destroy_session("bash")
    assert destroyed["destroyed"]["bash"]["status"] == "closed"
    assert not _alive(pid), "destroy must run the backend's cleanup"
    assert (await sandbox.list_sessions())["sessions"] == []


async def test_creating_an_existing_session_answers_with_its_status(sandbox: Sandbox) -> None:
    first = await sandbox.create_session("bash")
    again = await sandbox.create_session("bash")
    assert first["status"] == "success"
    assert again["status"] == "exists"
    assert again["session_id"] == first["session_id"]


async def test_context_manager_destroys_the_sessions_it_created(client: Client, worker) -> None:
    async with Sandbox(new_sandbox_id(), client=client) as sandbox:
        await sandbox.create_session("bash")
        pid = (await sandbox.execute("bash:run", {"command": NS_COMMAND}))["data"]["stdout"].strip()
        assert _alive(pid)
    assert not _alive(pid)
    view = await Sandbox(sandbox.sandbox_id, client=client).describe_session("bash")
    assert view is not None and view["status"] == "closed"


def _alive(pid: int | str) -> bool:
    """A process, or (``pid:[N]``, what NS_COMMAND prints) anything in a session's sandbox."""
    if isinstance(pid, str):
        return sandboxes.alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); count it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
