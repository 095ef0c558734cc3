"""docs/contract.md, the contract for plain-JSON callers, says what the code does: every result
code, every message of the session workflow, every request field, and its CLI walk-through runs."""

from __future__ import annotations

import asyncio
import json
import re
import shlex

from pydantic import BaseModel
from temporalio import workflow

from contract import (
    AppendRequest,
    CheckpointRequest,
    DestroyRequest,
    ErrorCode,
    EventsQuery,
    ExecuteRequest,
    MetadataRequest,
    OpenRequest,
    RefreshRequest,
    ReinitializeRequest,
    RenameRequest,
    SaveCheckpointRequest,
    SessionInput,
    SetStateRequest,
)
from runtime.embedded import temporal_binary
from tests.conftest import new_sandbox_id
from tests.processes import ROOT, WorkerProcess
from workflows import SessionWorkflow

DOC = ROOT / "docs" / "contract.md"


def _doc() -> str:
    return DOC.read_text()


def _section(title: str) -> str:
    return _doc().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_sends_readers_to_the_contract_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/contract.md)" in readme and DOC.is_file()
    assert "../shared" not in readme and "SPEC.md" not in readme


def test_every_result_code_is_in_the_table() -> None:
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", _section("Result codes"), re.MULTILINE)
    assert rows == [(str(int(code)), code.name) for code in ErrorCode]


def test_every_message_of_the_session_workflow_is_in_the_table() -> None:
    table = _section("Messages of SessionWorkflow")
    documented: dict[str, set[str]] = {"update": set(), "signal": set(), "query": set()}
    for kinds, name in re.findall(r"^\| ([a-z +]+) \| `(\w+)` \|", table, re.MULTILINE):
        for kind in kinds.split(" + "):
            documented[kind].add(name)
    definition = workflow._Definition.must_from_class(SessionWorkflow)
    assert documented["update"] == set(definition.updates)
    assert documented["signal"] == set(definition.signals)
    assert documented["query"] == set(definition.queries)


def test_every_request_field_is_documented() -> None:
    models: list[type[BaseModel]] = [
        AppendRequest,
        CheckpointRequest,
        DestroyRequest,
        EventsQuery,
        ExecuteRequest,
        MetadataRequest,
        OpenRequest,
        RefreshRequest,
        ReinitializeRequest,
        RenameRequest,
        SaveCheckpointRequest,
        SetStateRequest,
    ]
    requests = _section("Requests")
    for model in models:
        row = re.search(rf"^\| `{model.__name__}` \| (.*)$", requests, re.MULTILINE)
        assert row, model.__name__
        identity = {"user_id", "admin"}
        for field in set(model.model_fields) - identity:
            assert f"`{field}`" in row.group(1), f"{model.__name__}.{field}"
    starting = _section("Starting a session")
    for field in SessionInput.model_fields:
        assert f"| `{field}` |" in starting, f"SessionInput.{field}"


def _walkthrough(sandbox_id: str) -> list[list[str]]:
    block = _section("A session from the temporal CLI").split("```bash\n", 1)[1].split("```")[0]
    block = block.replace("demo", sandbox_id).replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in block.strip().splitlines()]


async def test_the_cli_walkthrough_runs(address: str, worker: WorkerProcess) -> None:
    sandbox_id = new_sandbox_id("doc")
    answers: dict[tuple[str, str], str] = {}
    for args in _walkthrough(sandbox_id):
        proc = await asyncio.create_subprocess_exec(
            temporal_binary(),
            *args,
            "--address",
            address,
            "--output",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"temporal {shlex.join(args)}\n{out.decode()}"
        if "--name" in args:  # ("update", "execute"), ("query", "events"), ...
            answers[(args[1], args[args.index("--name") + 1])] = out.decode()
    envelope = json.loads(answers[("update", "execute")])["result"]
    assert envelope["code"] == 0 and envelope["data"]["stdout"] == "/tmp\n", envelope
    events = json.loads(answers[("query", "events")])["queryResult"][0]["events"]
    assert [e["request_id"] for e in events] == ["r1", "r2"]
    assert json.loads(answers[("update", "destroy")])["result"]["status"] == "closed"
