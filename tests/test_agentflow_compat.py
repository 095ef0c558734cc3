"""Code written for AgentFlow's Sandbox runs unchanged on ours: its constructor, calls and answer
shapes, straight to Temporal here and over HTTP in tests/test_http_api.py; one code table."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import Client

from client import Sandbox
from contract import ErrorCode
from tests.conftest import new_sandbox_id
from tests.processes import ROOT, WorkerProcess


async def agentflow_script(sandbox: Sandbox) -> None:
    """What an AgentFlow user's script does (create, execute on explicit and temporary sessions,
    refresh, reinitialize, list, batch, warmup, destroy), with AgentFlow's answer shapes."""
    await sandbox.start()  # warms the constructor's warmup_resources
    warm = await sandbox.get_warmup_status()
    assert warm["backends"]["bash"]["warmed_up"] is True, warm
    created = await sandbox.create_session({"bash": {"cwd": "/tmp", "custom_name": "shell"}})
    assert (created["status"], created["total"], created["success"]) == ("success", 1, 1), created
    entry = created["sessions"]["bash"]
    assert entry["status"] == "success" and entry["session_name"] == "shell"
    assert entry["config_applied"] == {"cwd": "/tmp"}

    first = await sandbox.execute("bash:run", {"command": "cd /; export A=1"})
    second = await sandbox.execute("run", {"command": "echo $PWD $A"}, timeout=10)
    assert first["code"] == 0 and second["data"]["stdout"] == "/ 1\n", second
    assert second["meta"]["session_id"] == entry["session_id"] and second["meta"]["trace_id"]
    temporary = await sandbox.execute("pid", {})
    assert temporary["code"] == 0 and temporary["meta"]["temporary_session"] is True

    refreshed = await sandbox.refresh_sessions("bash")
    assert refreshed["expires_at"] and refreshed["details"]["bash"]["status"] == "refreshed"
    reinit = await sandbox.reinitialize("bash", {"cwd": "/tmp", "custom_name": "fresh"})
    assert reinit["status"] == "success" and reinit["new_session_name"] == "fresh", reinit
    assert reinit["old_session_id"] == entry["session_id"] != reinit["new_session_id"]
    assert reinit["resource_type"] == "bash" and reinit["reinit_time_ms"] > 0

    listed = await sandbox.list_sessions()
    assert isinstance(listed, list) and len(listed) == 1
    assert (listed[0]["resource_type"], listed[0]["session_name"]) == ("bash", "fresh")
    assert listed[0]["session_id"] == reinit["new_session_id"] and listed[0]["expires_at"]

    batch = await sandbox.execute_batch(
        [
            {"action": "bash:run", "params": {"command": "echo one"}},
            {"action": "run", "params": {"command": "pwd"}, "timeout": 5},
        ]
    )
    assert batch["code"] == 0 and batch["data"]["success_count"] == 2, batch
    assert batch["data"]["results"][1]["data"]["stdout"] == "/tmp\n"

    tools = await sandbox.get_tools()
    assert {"name": "run", "full_name": "bash:run"}.items() <= next(
        t for t in tools if t["full_name"] == "bash:run"
    ).items()
    schema = await sandbox.get_tool_schema("run")
    assert schema is not None and "command" in schema["params_schema"]["properties"]
    status = await sandbox.get_status()
    assert status["code"] == 0 and status["data"]["active_resources"] == ["bash"]

    destroyed = await sandbox.destroy_session(["bash"])
    assert (destroyed["status"], destroyed["success"]) == ("success", 1)
    assert destroyed["details"]["bash"]["session_id"] == reinit["new_session_id"]
    assert await sandbox.list_sessions() == []
    await sandbox.close()


async def test_an_agentflow_script_runs_on_temporal(client: Client, worker: WorkerProcess) -> None:
    sandbox = Sandbox(
        worker_id=new_sandbox_id("af"),
        client=client,
        timeout=60,
        retry_count=3,
        warmup_resources=["bash"],
        auto_start_server=False,  # AgentFlow's own options are accepted
        server_config_path=None,
    )
    await agentflow_script(sandbox)


async def test_timeout_is_the_tools_own_or_cancels_the_call(
    client: Client, worker: WorkerProcess
) -> None:
    sandbox = Sandbox(new_sandbox_id(), client=client)
    await sandbox.create_session(["bash", "testkit"])
    # bash:run has a timeout parameter: AgentFlow's timeout becomes it.
    stopped = await sandbox.execute("bash:run", {"command": "sleep 20"}, timeout=1)
    assert stopped["code"] == ErrorCode.TIMEOUT and stopped["meta"]["execution_time_ms"] < 10_000
    # testkit:sleep has none: the worker cancels the call there, as AgentFlow does
    # (tests/test_timeout_cancels.py); a repeat of its request id answers the same.
    started = time.perf_counter()
    waited = await sandbox.execute("testkit:sleep", {"seconds": 2}, timeout=0.3)
    assert waited["code"] == ErrorCode.TIMEOUT and time.perf_counter() - started < 1.5
    assert waited["data"]["cancelled"] is True, waited
    request_id = waited["meta"]["request_id"]
    again = await sandbox.execute("testkit:sleep", {"seconds": 2}, request_id=request_id)
    assert again["code"] == ErrorCode.TIMEOUT and again["data"] == waited["data"]
    # Extra keyword arguments are parameters (AgentFlow's rule); trace_id is echoed.
    merged = await sandbox.execute("testkit:sleep", {}, seconds=0.01, trace_id="t-1")
    assert merged["code"] == 0 and merged["meta"]["trace_id"] == "t-1"
    assert re.fullmatch(r"[0-9a-f]{32}", (await sandbox.execute("pid"))["meta"]["trace_id"])
    bad = await sandbox.execute("testkit:sleep", {"seconds": 0}, timeout="soon")  # type: ignore[arg-type]
    assert bad["code"] == ErrorCode.WRONG_TYPE
    unknown = await sandbox.execute("nope", {})
    assert unknown["code"] == ErrorCode.UNKNOWN_TOOL and "<resource>:<action>" in unknown["message"]
    for spelled in ("bash.run", "bash_run", "bash-run"):
        assert (await sandbox.execute(spelled, {"command": "true"}))["code"] == 0
    await sandbox.shutdown_server()


def test_the_sync_flavour(address: str, worker: WorkerProcess) -> None:
    with Sandbox(worker_id=new_sandbox_id("sync"), address=address) as sandbox:
        assert sandbox.create_session_sync("bash")["status"] == "success"
        assert sandbox.execute_sync("run", {"command": "echo hi"})["data"]["stdout"] == "hi\n"
        assert [s["resource_type"] for s in sandbox.list_sessions_sync()] == ["bash"]
        assert sandbox.refresh_sessions_sync("bash")["status"] == "success"
        assert sandbox.get_status_sync()["data"]["active_resources"] == ["bash"]
        assert any(t["full_name"] == "bash:run" for t in sandbox.get_tools_sync())
    # Leaving the block destroyed the session it made.
    with Sandbox(worker_id=sandbox.sandbox_id, address=address) as again:
        assert again.list_sessions_sync() == []


def test_agentflow_constructor_forms() -> None:
    by_url = Sandbox("http://localhost:18890", worker_id="w-1")
    assert (by_url.server_url, by_url.worker_id) == ("http://localhost:18890", "w-1")

    @dataclass
    class SandboxConfig:  # AgentFlow's config object, as its users build it
        server_url: str = "http://localhost:18890"
        worker_id: str | None = "w-2"
        timeout: float = 30.0
        retry_count: int = 5
        warmup_resources: list[str] | None = None

    from_config = Sandbox(config=SandboxConfig(warmup_resources=["rag"]))
    assert from_config.server_url == "http://localhost:18890"
    assert (from_config.sandbox_id, from_config.timeout) == ("w-2", 30.0)
    assert from_config.warmup_resources == ["rag"]
    assert Sandbox(config={"server": {"session_ttl": 60}}).session_ttl == 60
    with pytest.raises(TypeError, match="server_urll"):
        Sandbox(server_urll="http://x")


def test_one_code_table_in_the_contract_with_agentflows_numbers() -> None:
    contract = (ROOT / "docs" / "contract.md").read_text()
    section = contract.split("## Result codes\n", 1)[1].split("\n## ", 1)[0]
    row = r"^\| (\d+) \| `([A-Z_]+)` \| [^|]* \| ([^|]*) \| (\d+)[^|]* \|$"
    rows = re.findall(row, section, re.M)
    assert [(int(c), n) for c, n, _, _ in rows] == [(int(c), c.name) for c in ErrorCode]
    agentflow: dict[int, Any] = {int(c): af for c, _, af, _ in rows}
    # Where AgentFlow names the situation, its number is ours.
    for code in (0, 4000, 4002, 4003, 4004, 4007, 5005, 5006, 5009, 5010, 5011, 5013):
        assert agentflow[code].startswith(str(code)), (code, agentflow[code])
    for code in (4008, 4009, 4010, 4011, 4012, 4013, 5014, 5015):
        assert agentflow[code].startswith("—"), (code, agentflow[code])


async def test_execute_batch_answers_with_agentflows_codes(
    client: Client, worker: WorkerProcess
) -> None:
    sandbox = Sandbox(new_sandbox_id(), client=client)
    ok = {"action": "testkit:sleep", "params": {"seconds": 0}}
    boom = {"action": "testkit:boom", "params": {}}
    partial, none, malformed = await asyncio.gather(
        sandbox.execute_batch([ok, boom], stop_on_error=False, parallel=True),
        sandbox.execute_batch([boom, ok]),
        sandbox.execute_batch([{"params": {}}]),
    )
    assert partial["code"] == ErrorCode.PARTIAL_FAILURE and partial["data"]["executed"] == 2
    assert [r["code"] for r in partial["data"]["results"]] == [0, ErrorCode.TOOL_ERROR]
    assert none["code"] == ErrorCode.ALL_REQUESTS_FAILED and none["data"]["executed"] == 1
    assert malformed["data"]["results"][0]["code"] == ErrorCode.INVALID_INPUT
