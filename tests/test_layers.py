"""The layers hold: no module imports a package of a layer above its own.

Bottom up: contract < backends < activities < workflows < runtime < client < integrations <
worker < cli and http_api < examples.
Workflows import only contract, workflows, temporalio, pydantic and the standard library (the
workflow sandbox re-imports them; activity and backend code has no place there). ``import client``
loads no activity, backend, worker or entry-point code. Outside workflows/ only the client's
gateway (``client/workflow_api.py``) names a handler of the session workflows.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each first-party top-level name and its layer; a module may import its own layer and below.
LAYERS = {
    "contract": 0,
    "backends": 1,
    "activities": 2,
    "workflows": 3,
    "runtime": 4,
    "client": 5,
    "integrations": 6,  # agent activities and tools, Nexus, MCP: built on the client
    "worker": 7,  # the worker process: at the top, beside the entry points
    "cli": 8,  # entry points may start a worker; nothing imports them
    "http_api": 8,  # the HTTP API: an entry point beside cli (which starts it)
    "examples": 9,  # runnable examples; only tests import them
}
WORKFLOW_ALLOWED = {"contract", "workflows", "temporalio", "pydantic"}


def _modules(name: str) -> list[Path]:
    package = ROOT / name
    if package.is_dir():
        return sorted(package.rglob("*.py"))
    return [ROOT / f"{name}.py"]


def _imported(tree: ast.Module, own: str) -> list[tuple[int, str]]:
    """(line, module) of every import anywhere in the module, lazy ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # A relative import stays inside its own package.
            found.append((node.lineno, own if node.level else node.module or own))
    return found


def _violations(name: str) -> list[str]:
    rank = LAYERS[name]
    problems: list[str] = []
    for path in _modules(name):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in _imported(tree, name):
            top = module.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if top in LAYERS and LAYERS[top] > rank:
                problems.append(f"{where} (layer {top} is above {name})")
            elif (
                name == "workflows"
                and top not in WORKFLOW_ALLOWED
                and top not in sys.stdlib_module_names
            ):
                problems.append(f"{where} (workflows import only {sorted(WORKFLOW_ALLOWED)})")
    return problems


@pytest.mark.parametrize("name", list(LAYERS))
def test_no_import_reaches_a_higher_layer(name: str) -> None:
    assert _modules(name), f"no modules found for {name}"
    problems = _violations(name)
    assert not problems, "\n".join(problems)


def test_importing_the_client_loads_no_worker_side_code() -> None:
    probe = (
        "import json, sys\n"
        "import client\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('activities', 'backends', 'integrations', 'worker', 'cli', "
        "'http_api', 'fastapi', 'uvicorn'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert loaded == [], f"import client loaded {loaded}"


#: The workflows whose handlers only ``workflows/`` and the client's gateway may name.
GATEWAY = ROOT / "client" / "workflow_api.py"
GATED_WORKFLOWS = {"SessionWorkflow", "SharedToolsWorkflow", "WarmupWorkflow"}


def _first_party_sources() -> list[Path]:
    """Every Python file of ours outside tests/, workflows/ and the gateway."""
    skipped = {"tests", "workflows", "build"}
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if path != GATEWAY
        and not any(p.startswith(".") or p in skipped for p in path.relative_to(ROOT).parts[:-1])
    )


def _handler_references(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, ``Workflow.handler``) of every attribute read of a gated workflow class, under
    its own name or an alias it was imported as."""
    names = set(GATED_WORKFLOWS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "workflows":
            names |= {a.asname for a in node.names if a.name in GATED_WORKFLOWS and a.asname}
    return [
        (node.lineno, f"{node.value.id}.{node.attr}")
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in names
    ]


def test_only_the_gateway_names_a_session_workflow_handler() -> None:
    """Outside workflows/ the session workflows are reached through client/workflow_api.py: a
    handler named anywhere else would be a second, untyped way to call them."""
    assert GATEWAY.is_file()
    problems = [
        f"{path.relative_to(ROOT)}:{line} names {name} (use client.workflow_api)"
        for path in _first_party_sources()
        for line, name in _handler_references(ast.parse(path.read_text(), filename=str(path)))
    ]
    assert not problems, "\n".join(problems)


def test_the_handler_check_finds_a_reference() -> None:
    tree = ast.parse(
        "from workflows import SessionWorkflow as S, WarmupWorkflow\n"
        "async def f(client):\n"
        "    await client.get_workflow_handle_for(S.run, 'x').query(S.describe)\n"
        "    await client.execute_workflow(WarmupWorkflow.run, None)\n"
    )
    found = sorted(n for _, n in _handler_references(tree))
    assert found == ["S.describe", "S.run", "WarmupWorkflow.run"]
