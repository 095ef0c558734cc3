"""Every shell command and Python block in README.md, docs/*.md and bench/README.md (the manual's
performance page) runs here, against the suite's real Temporal server and worker, or says right
above its fence why it does not:

- ``<!-- not run: REASON -->``: it cannot run here (a persistent server, a benchmark, an install);
  a first line ``# Not run by the docs test: REASON`` inside the block says the same;
- ``<!-- run by tests/test_x.py -->``: that test runs it as written (and names it, or its page);
- ``<!-- excerpt of examples/x.py -->``: its lines are cut from that file, in order (``...``
  marks a gap); the file itself runs (a block of the same page runs it).

Python blocks of one page run in order in one namespace, as a reader reads them, with top-level
``await``, ``TEMPORAL_ADDRESS`` set to the test server and ``.venv/bin`` first on PATH. Shell blocks
run with ``bash -euo pipefail`` from the repository root, with the same environment, when every
command in them is one the test knows to be safe (the project's CLI against the test server,
``curl`` against a test HTTP API, the examples); any other unmarked block fails the test, so a
new command in the docs either runs or says why not. Addresses in the docs (``127.0.0.1:7233``,
``http://127.0.0.1:18890``, ``http://127.0.0.1:8000/mcp``) are replaced by the test servers', and
a few names by unique ones (``PLANS``); ``PLANS`` also holds each block's checks."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import os
import re
import shlex
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from client import Sandbox
from tests.conftest import new_sandbox_id
from tests.devserver import free_port
from tests.processes import ROOT, WorkerProcess, run_to_end, wait_listening

#: The README, the manual in docs/, and the performance page the README links to.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
RUN_LANGS = {"bash", "sh", "console", "python"}
SHOWN_LANGS = {"text", "json"}  # output and payloads: nothing to run
MARK = re.compile(r"^<!--\s*(not run|run by|excerpt of):?\s*(.*?)\s*-->$")
#: The same as ``<!-- not run: REASON -->``, as the block's first line.
MARK_INSIDE = re.compile(r"^#\s*not run by the docs test:\s*(.*)$", re.I)
FENCE = re.compile(r"^( *)```(.*)$")
README_MAX_LINES = 220


@dataclass(frozen=True)
class Block:
    page: str  # "README.md", "docs/tools.md"
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    heading: str  # the nearest heading above it
    mark: tuple[str, str] | None  # (kind, argument) of the marker above it

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _page_name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def parse(path: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a page, and what is wrong with its code blocks (unlabelled fences,
    indented code blocks, unknown languages)."""
    blocks: list[Block] = []
    problems: list[str] = []
    lines = path.read_text().splitlines()
    heading = ""
    previous = ""  # the last non-blank line outside a fence
    in_list = False
    i = 0
    while i < len(lines):
        line = lines[i]
        opened = FENCE.match(line)
        if opened:
            indent, lang = len(opened.group(1)), opened.group(2).strip()
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and not re.match(rf"^ {{{indent}}}```\s*$", lines[i]):
                body.append(lines[i][indent:])
                i += 1
            where = f"{_page_name(path)}:{start + 1}"
            if i == len(lines):
                problems.append(f"{where}: a fence that never closes")
            if not lang:
                problems.append(f"{where}: a fence without a language (```bash, ```text, ...)")
            elif lang not in RUN_LANGS | SHOWN_LANGS:
                problems.append(f"{where}: unknown language {lang!r}")
            marked = MARK.match(previous.strip())
            inside = MARK_INSIDE.match(body[0].strip()) if body else None
            if inside and not marked:
                marked = re.match(r"(not run)(.*)", f"not run{inside.group(1)}")
            blocks.append(
                Block(
                    _page_name(path),
                    start + 1,
                    lang,
                    "\n".join(body) + "\n",
                    heading,
                    (marked.group(1), marked.group(2)) if marked else None,
                )
            )
            previous = line
            i += 1
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip():
            stripped = line.lstrip()
            if line.startswith("    ") and lines[i - 1].strip() == "" and not in_list:
                problems.append(
                    f"{_page_name(path)}:{i + 1}: an indented code block; fence it "
                    "(```bash, ```text, ...) so this test sees it"
                )
            in_list = stripped.startswith(("- ", "* ")) or (in_list and line.startswith("  "))
            previous = line
        i += 1
    return blocks, problems


ALL: list[Block] = []
PROBLEMS: list[str] = []
for _page in PAGES:
    _blocks, _problems = parse(_page)
    ALL += _blocks
    PROBLEMS += _problems
RUNNABLE = [b for b in ALL if b.lang in RUN_LANGS and b.mark is None]


# --- what the test servers are, and how a block is run ----------------------------------------


class Stack:
    """The servers blocks talk to, started when a block first needs them."""

    def __init__(self, client: Client, address: str, workdir: Path) -> None:
        self.client = client
        self.address = address
        self.workdir = workdir
        self.user = f"alice-{uuid.uuid4().hex[:6]}"
        self._procs: list[asyncio.subprocess.Process] = []
        self._http: str | None = None
        self._keyed: tuple[str, str] | None = None
        self._mcp: str | None = None
        self.demo_output = ""

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TEMPORAL_ADDRESS": self.address,
            "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "COLUMNS": "200",
        }

    async def _serve(self, *args: str, port: int, env: dict[str, str] | None = None) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", *args, "--address", self.address, "--port", str(port),
            cwd=str(ROOT), env=env or self.env(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._procs.append(proc)
        await wait_listening(proc, port, f"`cli {' '.join(args)}`")

    async def http_api(self) -> str:
        """``durable-sessions http`` with no keys: loopback only, as ``./run.sh`` serves it."""
        if self._http is None:
            env = {k: v for k, v in self.env().items() if "DURABLE_SESSIONS_API_KEY" not in k}
            port = free_port()
            await self._serve("http", port=port, env=env)
            self._http = f"http://127.0.0.1:{port}"
        return self._http

    async def keyed_api(self) -> tuple[str, str]:
        """``durable-sessions http`` with a key ``durable-sessions http-key`` made: (url, key)."""
        if self._keyed is None:
            code, out = await shell(f"durable-sessions http-key {self.user}", self.env())
            assert code == 0, out
            key = re.search(r"^key .*: (\S+)$", out, re.M)
            line = re.search(rf"^{self.user} sha256:\S+.*$", out, re.M)
            assert key and line, out
            port = free_port()
            await self._serve(
                "http", port=port, env={**self.env(), "DURABLE_SESSIONS_API_KEYS": line.group(0)}
            )
            self._keyed = (f"http://127.0.0.1:{port}", key.group(1))
        return self._keyed

    async def mcp_http(self) -> str:
        if self._mcp is None:
            port = free_port()
            await self._serve("mcp", "--transport", "http", port=port)
            self._mcp = f"http://127.0.0.1:{port}/mcp"
        return self._mcp

    async def demo(self) -> str:
        """``durable-sessions demo``, what ``./run.sh`` runs: it leaves a session owned by demo."""
        command = f"{sys.executable} -m cli demo --address {self.address}"
        code, out = await shell(command, self.env())
        assert code == 0 and "demo succeeded" in out, out
        return out

    async def close(self) -> None:
        for proc in self._procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def shell(script: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    return await run_to_end("bash", "-euo", "pipefail", "-c", script, env=env, timeout=timeout)


@dataclass
class Run:
    """What a block left: its output, and for Python its namespace."""

    output: str
    namespace: dict[str, Any] = field(default_factory=dict)


Setup = Callable[[Stack], Awaitable[dict[str, str]]]  # text replacements (and $ENV: values)
Check = Callable[[Run, Stack], Awaitable[None]]


@dataclass
class Plan:
    setup: Setup | None = None
    check: Check | None = None


# --- safe shell commands -----------------------------------------------------------------------

SAFE_COMMANDS = (
    ("source", ".venv/bin/activate"),
    ("durable-sessions", "sessions"),
    (".venv/bin/durable-sessions", "sessions"),
    ("durable-sessions", "http-key"),
    (".venv/bin/durable-sessions", "http-key"),
    ("temporal", "workflow"),
    ("curl",),
    (".venv/bin/python", "-m", "examples."),
    (".venv/bin/python", "-m", "runtime.encryption", "genkey"),
    ("export",),
)


def _commands(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    return [c for c in (line.strip() for line in joined.splitlines()) if c and c[0] != "#"]


def unsafe_commands(text: str) -> list[str]:
    """The commands of a shell block this test does not know to be safe to run."""
    unsafe = []
    for command in _commands(text):
        words = shlex.split(command, comments=True)
        if words and re.match(r"^[A-Za-z_]\w*=\$\(", words[0]):  # S=$(durable-sessions ...)
            inner = command.split("$(", 1)[1].rsplit(")", 1)[0]
            words = shlex.split(inner.split("|")[0], comments=True)
        if not any(_starts_with(words, safe) for safe in SAFE_COMMANDS):
            unsafe.append(command)
    return unsafe


def _starts_with(words: list[str], safe: tuple[str, ...]) -> bool:
    """``words`` begin with ``safe`` (a word of ``safe`` ending in "." is a prefix)."""
    if len(words) < len(safe):
        return False
    pairs = zip(words, safe, strict=False)
    return all(w.startswith(s) if s.endswith(".") else w == s for w, s in pairs)


# --- the blocks that need more than the defaults, and what each must show ----------------------


def _json_objects(text: str) -> list[Any]:
    """The JSON values printed one after another (curl -s prints no newline after a body)."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        value, i = decoder.raw_decode(text, i)
        found.append(value)
    return found


async def _demo(stack: Stack) -> dict[str, str]:
    stack.demo_output = await stack.demo()
    return {}


def _unique_sandboxes() -> dict[str, str]:
    """The docs' sandbox ids, unique to this run: a session another test left cannot answer."""
    return {f'"{name}"': f'"{new_sandbox_id(name)}"' for name in ("w1", "demo-http", "demo-sse")}


async def _http(stack: Stack) -> dict[str, str]:
    return {"http://127.0.0.1:18890": await stack.http_api(), **_unique_sandboxes()}


async def _keyed(stack: Stack) -> dict[str, str]:
    url, key = await stack.keyed_api()
    return {"http://127.0.0.1:18890": url, "$ENV:KEY": key, **_unique_sandboxes()}


async def _mcp(stack: Stack) -> dict[str, str]:
    return {"http://127.0.0.1:8000/mcp": await stack.mcp_http()}


async def _a_user(stack: Stack) -> dict[str, str]:
    return {'"alice"': f'"{stack.user}"'}


async def _nexus_endpoint(stack: Stack) -> dict[str, str]:
    from contract.naming import DEFAULT_TASK_QUEUE, NEXUS_ENDPOINT
    from runtime.nexus_endpoint import ensure_nexus_endpoint

    await ensure_nexus_endpoint(stack.client, name=NEXUS_ENDPOINT, task_queue=DEFAULT_TASK_QUEUE)
    return {}


async def _after_run(run: Run, stack: Stack) -> None:
    # What the README says ./run.sh shows is what the demo printed, step by step.
    (shown,) = [
        b for b in ALL if (b.page, b.heading, b.lang) == ("README.md", run_heading(), "text")
    ]

    def ids_masked(text: str) -> str:
        return re.sub(r"demo-[0-9a-f]{6}", "demo-ID", text)

    steps = [ids_masked(line) for line in shown.text.splitlines() if line.startswith("[")]
    printed = ids_masked(stack.demo_output)
    assert len(steps) == 6 and all(step in printed for step in steps), (steps, printed)
    assert "/tmp/demo 42" in run.output, run.output  # exec: the state the demo left
    assert '"queryResult"' in run.output, run.output  # temporal ... -o json
    assert ": closed" in run.output, run.output  # destroy, the block's last line


def run_heading() -> str:
    return "What you see after `./run.sh`"


async def _readme_python(run: Run, stack: Stack) -> None:
    assert run.namespace["r"]["data"]["stdout"] == "/ 1\n", run.namespace["r"]


async def _sandbox(run: Run, stack: Stack) -> None:
    assert run.namespace["once"]["meta"]["temporary_session"] is True, run.namespace["once"]
    assert run.namespace["r"]["data"]["stdout"] == "/tmp\n", run.namespace["r"]
    assert re.fullmatch(r"True bash-[0-9a-f]{12} active\n", run.output), run.output


async def _agentflow(run: Run, stack: Stack) -> None:
    r = run.namespace["r"]
    assert r["code"] == 0 and r["data"]["stdout"] == "/tmp\n", r


async def _live(run: Run, stack: Stack) -> None:
    envelope = run.namespace["envelope"]
    assert envelope["code"] == 0 and "step 3" in envelope["data"]["stdout"], envelope
    assert "step 1\nstep 2\nstep 3\n" in run.output, run.output  # printed as it came


async def _files(run: Run, stack: Stack) -> None:
    sent = (stack.workdir / "model.bin").read_bytes()
    assert (stack.workdir / "copy.bin").read_bytes() == sent


async def _manager(run: Run, stack: Stack) -> None:
    page = run.namespace["page"]
    assert [e["content"] for e in page["events"]] == ["Plan a trip to Lisbon"], page


async def _background(run: Run, stack: Stack) -> None:
    assert run.namespace["r"]["data"]["stdout"] == "up\n", run.namespace["r"]
    assert "GET / HTTP" in run.namespace["out"]["data"]["output"], run.namespace["out"]


async def _curl(run: Run, stack: Stack) -> None:
    answers = _json_objects(run.output)
    assert answers[0]["status"] == "healthy", answers
    assert [a["code"] for a in answers[1:]] == [0, 0, 0, 0], answers
    assert answers[3]["data"]["stdout"] == "/ 1\n", answers[3]


async def _sse_curl(run: Run, stack: Stack) -> None:
    # The create answer has no newline of its own, so an event may start mid-line.
    events = re.findall(r"event: (\w+)\ndata: (.*)", run.output)
    texts = "".join(json.loads(data)["text"] for kind, data in events if kind == "chunk")
    assert texts == "one\ntwo\n", run.output
    assert events[-1][0] == "result" and json.loads(events[-1][1])["code"] == 0, run.output


async def _keyed_curl(run: Run, stack: Stack) -> None:
    (answer,) = _json_objects(run.output)
    assert answer["code"] == 0 and answer["data"]["stdout"] == "65534\n", answer


async def _keys(run: Run, stack: Stack) -> None:
    assert run.output.count("line for the keys file") == 2, run.output
    assert re.search(r"^ops sha256:\S+ admin$", run.output, re.M), run.output


async def _genkey(run: Run, stack: Stack) -> None:
    assert re.match(r"^k1:[A-Za-z0-9+/]{43}=$", run.output.strip()), run.output


async def _agents(run: Run, stack: Stack) -> None:
    assert run.output.count("done: 2 tool calls") == 2, run.output
    assert run.output.count('"stdout": "/tmp/demo\\n"') == 2, run.output


async def _nexus(run: Run, stack: Stack) -> None:
    assert "'stdout': '/tmp/nexus\\n'" in run.output, run.output


async def _caller(run: Run, stack: Stack) -> None:
    """The workflow the block defines, run on a worker of its own against a live session."""
    agent = run.namespace["Agent"]
    sandbox = Sandbox(new_sandbox_id("doc"), client=stack.client)
    await sandbox.create_session("bash", {"cwd": "/usr"})
    queue = f"doc-callers-{uuid.uuid4().hex[:6]}"
    try:
        async with Worker(
            stack.client,
            task_queue=queue,
            workflows=[agent],
            workflow_runner=UnsandboxedWorkflowRunner(),  # the class lives in no module
        ):
            listing = await stack.client.execute_workflow(
                agent.run, f"{sandbox.sandbox_id}:bash", id=f"doc-{queue}", task_queue=queue
            )
    finally:
        await sandbox.close()
    assert "bin" in listing.split(), listing


async def _mcp_client(run: Run, stack: Stack) -> None:
    assert "'stdout': '/tmp\\n'" in run.output and "is_error=False" in run.output, run.output


async def _backend(run: Run, stack: Stack) -> None:
    outcome, missing = run.namespace["outcome"], run.namespace["missing"]
    assert (outcome.code, outcome.data) == (0, {"text": "> hi"}), outcome
    assert missing.code == 4003, missing


async def _demo_cli(run: Run, stack: Stack) -> None:
    assert '"code": 0' in run.output and '"queryResult"' in run.output, run.output


#: By page and heading; a section with several runnable blocks has a plan for each, in order.
PLANS: dict[tuple[str, str], Plan | tuple[Plan, ...]] = {
    ("README.md", "What you see after `./run.sh`"): Plan(_demo, _after_run),
    ("README.md", "From Python"): Plan(check=_readme_python),
    ("docs/client.md", "Sandbox"): Plan(check=_sandbox),
    ("docs/client.md", "AgentFlow's calls"): Plan(_http, _agentflow),
    ("docs/client.md", "Live output"): Plan(check=_live),
    ("docs/client.md", "Files"): Plan(check=_files),
    ("docs/client.md", "SessionManager"): Plan(_a_user, _manager),
    ("docs/tools.md", "Background processes"): Plan(check=_background),
    ("docs/http-api.md", "A session over HTTP"): Plan(_http, _curl),
    ("docs/http-api.md", "Live output (server-sent events)"): Plan(_http, _sse_curl),
    ("docs/security.md", "HTTP API keys"): (Plan(check=_keys), Plan(_keyed, _keyed_curl)),
    ("docs/security.md", "Encrypted payloads"): Plan(check=_genkey),
    ("docs/integrations.md", "Agent workflows: session activities and tools"): Plan(check=_agents),
    ("docs/integrations.md", "A session called from a workflow"): Plan(check=_caller),
    ("docs/integrations.md", "Nexus: sessions for workflows in other namespaces"): Plan(
        _nexus_endpoint, _nexus
    ),
    ("docs/integrations.md", "MCP server"): Plan(_mcp, _mcp_client),
    ("docs/backends.md", "Writing a backend"): (Plan(), Plan(check=_backend)),
    ("docs/contract.md", "A session from the temporal CLI"): Plan(_demo, _demo_cli),
}


def _section(block: Block) -> list[Block]:
    return [b for b in RUNNABLE if (b.page, b.heading) == (block.page, block.heading)]


def plan_for(block: Block) -> Plan:
    plan = PLANS.get((block.page, block.heading), Plan())
    if isinstance(plan, tuple):
        return plan[_section(block).index(block)]
    return plan


# --- the tests ---------------------------------------------------------------------------------


def test_every_block_runs_or_says_why() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)
    wrong = []
    for b in ALL:
        if b.mark is None:
            if b.lang in RUN_LANGS - {"python"} and (unsafe := unsafe_commands(b.text)):
                wrong.append(
                    f"{b.id}: not known to be safe here: {unsafe}; run it through the project's "
                    "CLI, or mark it <!-- not run: REASON -->"
                )
            continue
        kind, argument = b.mark
        if b.lang not in RUN_LANGS:
            wrong.append(f"{b.id}: a marker above a {b.lang} block, which never runs")
        elif kind == "not run":
            if len(argument) < 8:
                wrong.append(f"{b.id}: 'not run' needs a reason a reader understands")
        elif kind == "run by":
            target = ROOT / argument
            if not target.is_file():
                wrong.append(f"{b.id}: {argument} does not exist")
            elif argument not in b.text and Path(b.page).name not in target.read_text():
                wrong.append(f"{b.id}: {argument} names neither this block nor {b.page}")
        elif kind == "excerpt of":
            wrong += [f"{b.id}: {problem}" for problem in _excerpt_problems(b, ROOT / argument)]
    sections: dict[tuple[str, str], int] = {}
    for b in RUNNABLE:
        sections[(b.page, b.heading)] = sections.get((b.page, b.heading), 0) + 1
    for key, plan in PLANS.items():
        if key not in sections:
            wrong.append(f"PLANS has {key}, where no block runs")
        elif isinstance(plan, tuple) and len(plan) != sections[key]:
            wrong.append(f"PLANS has {len(plan)} plans for {key}, which has {sections[key]} blocks")
        elif not isinstance(plan, tuple) and sections[key] != 1:
            wrong.append(f"PLANS has one plan for {key}, which has {sections[key]} blocks")
    assert not wrong, "\n".join(wrong)


def _excerpt_problems(block: Block, source: Path) -> list[str]:
    if not source.is_file():
        return [f"{source} does not exist"]
    lines = [line.strip() for line in source.read_text().splitlines()]
    at = 0
    for wanted in (line.strip() for line in block.text.splitlines()):
        if not wanted or wanted == "...":
            continue
        try:
            at = lines.index(wanted, at) + 1
        except ValueError:
            return [f"{wanted!r} is not in {source.relative_to(ROOT)} (after what came before)"]
    return []


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_between_pages_reach_a_page_and_a_heading() -> None:
    anchors = {
        page.resolve(): {
            _slug(line.lstrip("#"))
            for line in page.read_text().splitlines()
            if re.match(r"^#{1,6} ", line)
        }
        for page in PAGES
    }
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page.resolve()
            if not resolved.exists():
                broken.append(f"{_page_name(page)}: {target}: no such file")
            elif anchor and resolved in anchors and anchor not in anchors[resolved]:
                broken.append(f"{_page_name(page)}: {target}: no such heading")
    assert not broken, "\n".join(broken)


def test_the_readme_fits_a_screen_or_two() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move some to docs/"


@pytest.fixture(scope="module")
async def stack(
    client: Client, address: str, worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    s = Stack(client, address, tmp_path_factory.mktemp("docs"))
    try:
        yield s
    finally:
        await s.close()


_NAMESPACES: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
async def test_block(block: Block, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(block)
    replacements = {"127.0.0.1:7233": stack.address}
    if plan.setup is not None:
        replacements.update(await plan.setup(stack))
    env = stack.env()
    text = block.text
    for old, new in replacements.items():
        if old.startswith("$ENV:"):
            env[old[5:]] = new
        else:
            text = text.replace(old, new)
    if block.lang == "python":
        run = await _run_python(block, text, env, stack, monkeypatch)
    else:
        if block.lang == "console":  # the commands are the lines after a prompt
            text = "\n".join(line[2:] for line in text.splitlines() if line.startswith("$ "))
        code, output = await shell(text, env)
        assert code == 0, f"{block.id} exited {code}:\n{text}\n{output}"
        run = Run(output)
    if plan.check is not None:
        await plan.check(run, stack)


async def _run_python(
    block: Block, text: str, env: dict[str, str], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> Run:
    for name, value in env.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(stack.workdir)
    namespace = _NAMESPACES.setdefault(block.page, {"__name__": f"docs_{uuid.uuid4().hex[:6]}"})
    code = compile(text, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = eval(code, namespace)  # noqa: S307 - the docs' own code, on a test server
        if asyncio.iscoroutine(result):
            await asyncio.wait_for(result, 120)
    return Run(printed.getvalue(), namespace)
