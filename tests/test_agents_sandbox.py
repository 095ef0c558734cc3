"""The durable-sessions provider for the OpenAI Agents SDK's sandboxes (``agents.sandbox``): a
SandboxAgent driven by the SDK's own ScriptedModel (no network), on the real server and a real
worker. The agent of the kill test runs in a child process (this module's ``__main__``)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import signal
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from agents import Runner
from agents.editor import ApplyPatchOperation
from agents.run import RunConfig
from agents.sandbox import LocalSnapshotSpec, SandboxAgent, SandboxRunConfig
from agents.sandbox.capabilities import Filesystem, Shell
from agents.sandbox.capabilities.tools.shell_tool import (
    ExecCommandArgs,
    ExecCommandTool,
    WriteStdinArgs,
    WriteStdinTool,
)
from agents.sandbox.errors import (
    InvalidManifestPathError,
    PtySessionNotFoundError,
    WorkspaceReadNotFoundError,
)
from agents.testing import ScriptedModel, assistant_message, function_call
from openai.types.responses import ResponseCustomToolCall
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from integrations.agents_sandbox import (
    DurableSessionsSandboxClient,
    DurableSessionsSandboxClientOptions,
    DurableSessionsSandboxSession,
)
from tests.processes import WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
PATCH = (
    "*** Begin Patch\n*** Add File: notes/hello.py\n+print('hello from the patch')\n*** End Patch\n"
)


def patch_call(call_id: str, patch: str) -> ResponseCustomToolCall:
    return ResponseCustomToolCall(
        type="custom_tool_call", name="apply_patch", input=patch, call_id=call_id
    )


def shell_call(call_id: str, cmd: str, wait_ms: int = 30_000) -> Any:
    return function_call("exec_command", {"cmd": cmd, "yield_time_ms": wait_ms}, call_id=call_id)


def tool_outputs(model: ScriptedModel) -> list[str]:
    """The tool outputs the model was sent back by its last call, in order."""
    last = model.calls[-1].input
    items = last if isinstance(last, list) else []
    return [
        str(item.get("output"))
        for item in items
        if isinstance(item, dict) and str(item.get("type", "")).endswith("_output")
    ]


def sandbox_agent(model: ScriptedModel) -> SandboxAgent[Any]:
    return SandboxAgent(
        name="worker", instructions="work", model=model, capabilities=[Filesystem(), Shell()]
    )


async def run_id(client: Client, workflow_id: str) -> str:
    return (await client.get_workflow_handle(workflow_id).describe()).run_id


@pytest.fixture(autouse=True)
def _no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")


async def test_agent_patches_runs_and_reads_through_a_durable_session(
    client: Client, worker: WorkerProcess
) -> None:
    """A Runner-owned session: the agent adds a file with apply_patch, runs it with exec_command
    and reads the result; the Runner's cleanup (delete) destroys the durable session."""
    sandbox_id = f"ags-{uuid.uuid4().hex[:8]}"
    provider = DurableSessionsSandboxClient(client=client)
    options = DurableSessionsSandboxClientOptions(sandbox_id=sandbox_id, ttl_seconds=120)
    run = "cd notes && python3 hello.py > out.txt && cat out.txt && pwd"
    model = ScriptedModel(
        [[patch_call("c1", PATCH)], [shell_call("c2", run)], [assistant_message("done")]]
    )
    run_config = RunConfig(sandbox=SandboxRunConfig(client=provider, options=options))
    result = await Runner.run(sandbox_agent(model), "go", run_config=run_config)

    patched, ran = tool_outputs(model)
    assert result.final_output == "done"
    assert "notes/hello.py" in patched, patched
    assert "exited with code 0" in ran and "hello from the patch\n/workspace/notes" in ran, ran
    closed = await client.get_workflow_handle(f"{sandbox_id}:bash").describe()
    assert closed.status is not None and closed.status.name == "COMPLETED"


async def test_session_contract(client: Client, worker: WorkerProcess) -> None:
    """What the SDK's tools and lifecycle ask of a session, checked on ours (the SDK ships no
    provider-agnostic suite): files in and out (chunked past 640 KiB), a missing file, paths that
    leave the workspace, apply_patch operations, ls / mkdir / rm, extract, the workspace archive
    into a second session, the state's JSON round trip, and exec's two shell modes."""
    provider = DurableSessionsSandboxClient(client=client)
    first = await provider.create(options=DurableSessionsSandboxClientOptions(ttl_seconds=120))
    second = await provider.create(
        options=DurableSessionsSandboxClientOptions(ttl_seconds=120, persistent_shell=False)
    )
    try:
        await first.start()
        big = os.urandom(1_500_000)
        await first.write(Path("data/big.bin"), io.BytesIO(big))
        assert (await first.read(Path("/workspace/data/big.bin"))).read() == big
        with pytest.raises(WorkspaceReadNotFoundError):
            await first.read(Path("nope.txt"))
        for escape in ("../outside.txt", "/tmp/outside.txt"):
            with pytest.raises(InvalidManifestPathError):
                await first.write(Path(escape), io.BytesIO(b"x"))
        await first.write(Path("a.txt"), io.BytesIO(b"one\n"))
        done = await first.apply_patch(
            [
                ApplyPatchOperation(type="update_file", path="a.txt", diff="@@\n-one\n+two\n"),
                ApplyPatchOperation(type="create_file", path="b.txt", diff="+bee\n"),
            ]
        )
        assert done == "Done!" and (await first.read(Path("a.txt"))).read() == b"two\n"
        await first.mkdir("deep/er", parents=True)
        await first.rm("b.txt")
        names = {Path(e.path).name for e in await first.ls(".")}
        assert {"a.txt", "data", "deep"} <= names and "b.txt" not in names
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo("x/y.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"why"))
        archive.seek(0)
        await first.extract("bundle.tar", archive)
        assert (await first.read(Path("x/y.txt"))).read() == b"why"

        await second.start()
        await second.hydrate_workspace(await first.persist_workspace())
        assert (await second.read(Path("data/big.bin"))).read() == big
        assert (await second.read(Path("x/y.txt"))).read() == b"why"
        assert ".durable-sessions-agents" not in {Path(e.path).name for e in await second.ls(".")}

        payload = json.loads(json.dumps(provider.serialize_session_state(first.state)))
        state = provider.deserialize_session_state(payload)
        assert state == first.state and payload["workflow_id"].endswith(":bash")

        await first.exec("cd deep && export KEPT=yes")  # persistent: the next exec is there
        kept = await first.exec("pwd; echo $KEPT")
        await second.exec("cd x && export KEPT=yes")  # one child process each
        fresh = await second.exec("pwd; echo ${KEPT:-none}")
        assert kept.stdout == b"/workspace/deep\nyes\n", kept
        # A script that ends the shell (the SDK's `cd DIR || exit`) answers its code; the shell
        # comes back where it was.
        assert (await first.exec("exit 3")).exit_code == 3
        assert (await first.exec("pwd; echo $KEPT")).stdout == kept.stdout
        assert fresh.stdout == b"/workspace\nnone\n", fresh
    finally:
        await provider.delete(first)
        await provider.delete(second)


async def test_a_killed_agent_process_is_resumed_on_the_same_session(
    client: Client, address: str, worker: WorkerProcess, tmp_path: Path
) -> None:
    """The process running the agent is SIGKILLed in the middle of a command; this process
    resumes from the state it saved and finds the same durable session: same workflow and run,
    the patched file, the commands' output, the shell's cwd and exported variable."""
    sandbox_id = f"ags-{uuid.uuid4().hex[:8]}"
    state_file = tmp_path / "state.json"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.test_agents_sandbox", address, sandbox_id, str(state_file),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"},
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.strip() == b"SLEEPING", line
        await asyncio.sleep(1.5)  # the call reaches the session: its command runs
        workflow_id = f"{sandbox_id}:bash"
        before = await run_id(client, workflow_id)
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()

    provider = DurableSessionsSandboxClient(client=client)
    state = provider.deserialize_session_state(json.loads(state_file.read_text()))
    check = "pwd; echo mark=$RUN_MARK; cat out.txt late.txt; cat /workspace/notes/hello.py"
    model = ScriptedModel([[shell_call("r1", check)], [assistant_message("resumed")]])
    run_config = RunConfig(sandbox=SandboxRunConfig(client=provider, session_state=state))
    result = await Runner.run(sandbox_agent(model), "where were we?", run_config=run_config)

    (answer,) = tool_outputs(model)
    assert result.final_output == "resumed"
    assert state.workflow_id == workflow_id and state.replacements == 0
    assert await run_id(client, workflow_id) == before  # the same run of the same workflow
    # The command the killed process left running finished in the same shell first.
    assert "/workspace/proj\nmark=alpha\nhello from the patch\nlate\n" in answer, answer
    assert "print('hello from the patch')" in answer, answer


async def test_resume_after_expiry_hydrates_a_replacement_from_the_snapshot(
    client: Client, worker: WorkerProcess, tmp_path: Path
) -> None:
    """The session expires (2 s TTL) after the SDK persisted its snapshot (stop); resume opens a
    replacement (a new run of the same workflow id) and start() hydrates it: the files are back,
    the shell is a fresh one (cwd and variables are not in a workspace snapshot)."""
    provider = DurableSessionsSandboxClient(client=client)
    options = DurableSessionsSandboxClientOptions(ttl_seconds=2)
    session = await provider.create(options=options, snapshot=LocalSnapshotSpec(base_path=tmp_path))
    await session.start()
    await session.exec("mkdir -p data && echo kept > data/a.txt && cd data && export X=1")
    await session.write(Path("b.bin"), io.BytesIO(b"\x00\x01binary"))
    await session.stop()  # the SDK persists the workspace through persist_workspace
    payload = json.loads(json.dumps(provider.serialize_session_state(session.state)))
    workflow_id = str(payload["workflow_id"])
    before = await run_id(client, workflow_id)
    await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 30)

    state = provider.deserialize_session_state(payload)
    resumed = await provider.resume(state)
    try:
        await resumed.start()
        assert state.replacements == 1 and await run_id(client, workflow_id) != before
        assert (await resumed.read(Path("data/a.txt"))).read() == b"kept\n"
        assert (await resumed.read(Path("b.bin"))).read() == b"\x00\x01binary"
        fresh = await resumed.exec("pwd; echo ${X:-unset}")
        assert fresh.stdout == b"/workspace\nunset\n", fresh
    finally:
        await provider.delete(resumed)


async def test_a_retried_activity_runs_its_exec_once(client: Client, worker: WorkerProcess) -> None:
    """Under the SDK's Temporal integration each sandbox operation is an activity: a retried
    attempt (its worker lost after the command ran) sends the same request ids and gets the first
    attempt's answer; another activity runs the command again."""
    provider = DurableSessionsSandboxClient(client=client)
    session = await provider.create(options=DurableSessionsSandboxClientOptions(ttl_seconds=60))
    env = ActivityEnvironment()
    info = dataclasses.replace(
        env.info, workflow_id=f"agent-{uuid.uuid4().hex[:8]}", workflow_run_id="r", attempt=1
    )

    async def append() -> bytes:
        return (await session.exec("echo ran >> log.txt; wc -l < log.txt")).stdout

    try:
        env.info = info
        first = await env.run(append)
        env.info = dataclasses.replace(info, attempt=2)
        retried = await env.run(append)
        env.info = dataclasses.replace(info, activity_id="another")
        other = await env.run(append)
        assert (first, retried, other) == (b"1\n", b"1\n", b"2\n")
    finally:
        await provider.delete(session)


async def test_interactive_processes_over_the_shells_soft_timeouts(
    client: Client, worker: WorkerProcess
) -> None:
    """With ``pty=True`` the shell tool's commands answer once they end or go quiet, and its
    ``write_stdin`` tool feeds, polls and interrupts them, in the same persistent shell; a
    process that resumes the session interrupts a command left running by another."""
    provider = DurableSessionsSandboxClient(client=client)
    session = await provider.create(
        options=DurableSessionsSandboxClientOptions(ttl_seconds=60, pty=True)
    )
    exec_tool, stdin_tool = ExecCommandTool(session=session), WriteStdinTool(session=session)

    def process_id(answer: str) -> int:
        assert "Process running with session ID " in answer, answer
        return int(answer.split("Process running with session ID ")[1].split()[0])

    try:
        await session.start()
        asked = await exec_tool.run(
            ExecCommandArgs(cmd="cd /tmp && export P=1 && read name && echo hello $name",
                            yield_time_ms=500)
        )  # fmt: skip
        fed = await stdin_tool.run(WriteStdinArgs(session_id=process_id(asked), chars="ada\n"))
        slow = await exec_tool.run(ExecCommandArgs(cmd="sleep 1; echo done", yield_time_ms=300))
        polled = await stdin_tool.run(WriteStdinArgs(session_id=process_id(slow)))
        endless = await exec_tool.run(ExecCommandArgs(cmd="sleep 30", yield_time_ms=300))
        stopped = await stdin_tool.run(
            WriteStdinArgs(session_id=process_id(endless), chars="\u0003")
        )
        with pytest.raises(PtySessionNotFoundError):
            await session.pty_write_stdin(session_id=process_id(endless), chars="")
        # Another process resumes while a command it did not start still runs: it takes over.
        process_id(await exec_tool.run(ExecCommandArgs(cmd="sleep 30", yield_time_ms=300)))
        payload = provider.serialize_session_state(session.state)
        other = await provider.resume(provider.deserialize_session_state(payload))
        after = await other.exec("pwd; echo $P")
    finally:
        await provider.delete(session)
    assert "exited with code 0" in fed and fed.endswith("hello ada\n"), fed
    assert "exited with code 0" in polled and polled.endswith("done\n"), polled
    assert "exited with code 130" in stopped, stopped
    assert after.stdout == b"/tmp\n1\n", after


async def _child(address: str, sandbox_id: str, state_file: str) -> None:
    """The agent process of the kill test: saves its session's state, then runs an agent that
    patches a file, sets up a shell, and starts a long command (it is killed there)."""
    provider = DurableSessionsSandboxClient(address=address)
    options = DurableSessionsSandboxClientOptions(sandbox_id=sandbox_id, ttl_seconds=120)
    session = await provider.create(options=options)
    Path(state_file).write_text(json.dumps(provider.serialize_session_state(session.state)))

    inner = session._inner
    assert isinstance(inner, DurableSessionsSandboxSession)
    send = inner.call

    async def announced(action: str, params: dict[str, Any]) -> dict[str, Any]:
        if "late.txt" in str(params.get("command")):  # tell the test as the command is sent
            print("SLEEPING", flush=True)
        return await send(action, params)

    inner.call = announced  # type: ignore[method-assign]
    setup = (
        "mkdir -p proj && cd proj && export RUN_MARK=alpha && python3 ../notes/hello.py > out.txt"
    )
    model = ScriptedModel(
        [
            [patch_call("c1", PATCH)],
            [shell_call("c2", setup)],
            [shell_call("c3", "sleep 4; echo late > late.txt", wait_ms=60_000)],
            [assistant_message("never reached")],
        ]
    )
    await session.start()
    run_config = RunConfig(sandbox=SandboxRunConfig(session=session))
    await Runner.run(sandbox_agent(model), "go", run_config=run_config)


if __name__ == "__main__":
    asyncio.run(_child(*sys.argv[1:4]))
