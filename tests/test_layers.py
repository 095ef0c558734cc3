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


# --- sizes and circles ----------------------------------------------------------------------------

#: The most lines a first-party module outside tests/ may have, and a function.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
#: Modules allowed over MAX_MODULE_LINES, each with the reason; empty is the goal.
LONG_MODULES: dict[str, str] = {}


def _all_first_party() -> list[Path]:
    """Every Python file of ours outside tests/ (bench/, examples/ and worker.py included)."""
    return sorted(
        path
        for path in ROOT.rglob("*.py")
        if not any(
            p.startswith(".") or p in ("tests", "build") for p in path.relative_to(ROOT).parts[:-1]
        )
    )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in _all_first_party()
    }
    long = {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES and p not in LONG_MODULES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them along their ideas): {long}"
    stale = [p for p in LONG_MODULES if sizes.get(p, 0) <= MAX_MODULE_LINES]
    assert not stale, f"LONG_MODULES names modules that are no longer long: {stale}"


def test_no_function_is_over_80_lines() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has "
        f"{node.end_lineno - node.lineno + 1} lines"
        for path in _all_first_party()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not problems, "\n".join(problems)


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is loaded: its body, inside ``if`` and ``try`` too,
    but not under ``if TYPE_CHECKING:`` and not inside functions (lazy imports)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                test = node.test
                name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
                if name != "TYPE_CHECKING":
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def _import_graph(sources: dict[str, ast.Module], packages: set[str]) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports when loaded. ``from p import x`` is an
    edge to ``p.x`` when that is a module, else to ``p``."""
    graph: dict[str, set[str]] = {}
    for name, tree in sources.items():
        edges: set[str] = set()
        for node in _module_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    own = name.split(".") if name in packages else name.split(".")[:-1]
                    own = own[: len(own) - (node.level - 1)]
                    base = ".".join([*own, *([node.module] if node.module else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base
                    for alias in node.names
                ]
            edges |= {t for t in targets if t in sources and t != name}
        graph[name] = edges
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each module that lies on one (a path that ends where it began)."""
    circles: list[list[str]] = []
    seen: set[str] = set()
    for start in sorted(graph):
        if start in seen:
            continue
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        visited: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    circles.append([*path, start])
                    seen.update(path)
                    stack.clear()
                    break
                if nxt not in visited:
                    visited.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return circles


def test_no_import_circle() -> None:
    """No first-party module imports, when it is loaded, a module that imports it back."""
    paths = _all_first_party()
    sources = {_module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in paths}
    packages = {_module_name(p) for p in paths if p.name == "__init__.py"}
    circles = _circles(_import_graph(sources, packages))
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


def test_the_circle_check_finds_a_circle() -> None:
    sources = {
        "pkg": ast.parse("from pkg.a import f\n"),
        "pkg.a": ast.parse("from . import b\n"),
        "pkg.b": ast.parse("from pkg.a import f\ndef g():\n    import pkg.c\n"),
        "pkg.c": ast.parse("import typing\nif typing.TYPE_CHECKING:\n    import pkg.b\n"),
    }
    graph = _import_graph(sources, {"pkg"})
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}
    assert _circles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
