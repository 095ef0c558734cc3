"""Bad requests and failing tools answer with envelopes, and the session stays usable."""

from __future__ import annotations

from client import Sandbox


async def _still_usable(sandbox: Sandbox, session_id: str) -> None:
    after = await sandbox.execute("bash:run", {"command": "echo still here"})
    assert after["code"] == 0 and after["data"]["stdout"] == "still here\n"
    assert after["meta"]["session_id"] == session_id


async def test_unknown_tool(sandbox: Sandbox) -> None:
    created = await sandbox.create_session("bash")
    result = await sandbox.execute("bash:fly", {})
    assert result["code"] == 4002
    assert "bash:fly" in result["message"] and "bash:run" in result["message"]
    await _still_usable(sandbox, created["session_id"])


async def test_malformed_tool_name(sandbox: Sandbox) -> None:
    # A name without ':' must be an action only one resource has ("run" is bash:run's).
    result = await sandbox.execute("fly", {"command": "ls"})
    assert result["code"] == 4002
    assert "<resource>:<action>" in result["message"] and "bash:run" in result["message"]


async def test_missing_parameter(sandbox: Sandbox) -> None:
    created = await sandbox.create_session("bash")
    result = await sandbox.execute("bash:run", {})
    assert result["code"] == 4003
    assert "command" in result["message"]
    await _still_usable(sandbox, created["session_id"])


async def test_wrong_type(sandbox: Sandbox) -> None:
    created = await sandbox.create_session("bash")
    result = await sandbox.execute("bash:run", {"command": "ls", "timeout": "soon"})
    assert result["code"] == 4004
    assert "timeout" in result["message"]
    await _still_usable(sandbox, created["session_id"])


async def test_unknown_parameter(sandbox: Sandbox) -> None:
    # Dropped and named by default, as AgentFlow's **kwargs tools take it (issue 25); refused
    # (4000) on request: tests/test_agentflow_parity.py.
    created = await sandbox.create_session("bash")
    result = await sandbox.execute("bash:run", {"command": "ls", "colour": "red"})
    assert result["code"] == 0 and result["meta"]["ignored_params"] == ["colour"]
    strict = await sandbox.execute(
        "bash:run", {"command": "ls", "colour": "red"}, strict_params=True
    )
    assert strict["code"] == 4000
    assert "colour" in strict["message"]
    await _still_usable(sandbox, created["session_id"])


async def test_rejected_requests_leave_no_trace_in_the_session(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash")
    before = await sandbox.describe_session("bash")
    await sandbox.execute("bash:run", {})
    await sandbox.execute("bash:fly", {})
    after = await sandbox.describe_session("bash")
    assert before is not None and after is not None
    assert after["call_count"] == before["call_count"]
    assert after["deadline"] == before["deadline"]


async def test_execute_on_a_destroyed_session(sandbox: Sandbox) -> None:
    created = await sandbox.create_session("bash")
    await sandbox.destroy_session("bash")
    result = await sandbox.execute(
        "bash:run", {"command": "echo hi"}, session_id=created["session_id"]
    )
    assert result["code"] == 4007
    assert created["session_id"] in result["message"]
    # The sandbox itself is still usable: a new session works.
    again = await sandbox.create_session("bash")
    assert again["status"] == "success"
    await _still_usable(sandbox, again["session_id"])


async def test_execute_with_a_stale_session_id_after_reinitialize(sandbox: Sandbox) -> None:
    created = await sandbox.create_session("bash")
    reinit = await sandbox.reinitialize("bash", {})
    stale = await sandbox.execute("bash:run", {"command": "true"}, session_id=created["session_id"])
    assert stale["code"] == 4007
    await _still_usable(sandbox, reinit["new_session_id"])


async def test_raising_tool(sandbox: Sandbox) -> None:
    created = await sandbox.create_session("testkit")
    result = await sandbox.execute("testkit:boom", {"message": "kaput"})
    assert result["code"] == 5005
    assert result["data"] == {"error_type": "RuntimeError", "error": "kaput"}
    again = await sandbox.execute("testkit:pid", {})
    assert again["code"] == 0 and again["meta"]["session_id"] == created["session_id"]


async def test_command_past_its_timeout_is_killed_and_the_shell_comes_back(
    sandbox: Sandbox, tmp_path
) -> None:
    created = await sandbox.create_session("bash", {"cwd": str(tmp_path)})
    await sandbox.execute("bash:run", {"command": "mkdir d && cd d && export KEEP=yes"})
    result = await sandbox.execute(
        "bash:run", {"command": "echo started; sleep 30 & sleep 30", "timeout": 1}
    )
    assert result["code"] == 5006
    assert result["data"]["stdout"] == "started\n"
    assert result["meta"]["execution_time_ms"] < 10_000
    after = await sandbox.execute("bash:run", {"command": "echo $PWD $KEEP"})
    assert after["code"] == 0
    assert after["data"]["stdout"].split() == [str(tmp_path / "d"), "yes"]
    assert after["meta"]["session_id"] == created["session_id"]


async def test_output_is_capped_with_a_marker(sandbox: Sandbox) -> None:
    await sandbox.create_session("bash", {"max_output_bytes": 1000})
    result = await sandbox.execute("bash:run", {"command": "head -c 5000 /dev/zero | tr '\\0' a"})
    assert result["code"] == 0
    assert result["data"]["stdout"].startswith("a" * 1000)
    assert "output truncated: 4000 of 5000 bytes not shown" in result["data"]["stdout"]


async def test_exit_in_a_command_restarts_the_shell(sandbox: Sandbox, tmp_path) -> None:
    await sandbox.create_session("bash", {"cwd": str(tmp_path)})
    result = await sandbox.execute("bash:run", {"command": "exit 3"})
    assert result["code"] == 0 and result["data"]["return_code"] == 3
    assert "new shell" in result["data"]["note"]
    after = await sandbox.execute("bash:run", {"command": "pwd"})
    assert after["data"]["stdout"].strip() == str(tmp_path)


async def test_bad_config_fails_initialize_with_a_clear_envelope(sandbox: Sandbox) -> None:
    created = await sandbox.create_session("bash", {"cwd": "/no/such/dir"})
    assert created["status"] == "error"
    assert created["code"] == 4007
    assert "/no/such/dir" in created["message"]
