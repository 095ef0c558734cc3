"""A short live demonstration of durable sessions, narrated for a person.

It works in a sandbox of its own (``demo-<random>``), so it never touches a session someone
made by hand, and leaves its bash session running (owner ``demo``, for an hour) for the next
commands it prints (README.md, "What you see").
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from client.sandbox import Sandbox

#: The owner of the demo's sessions: `durable-sessions sessions ls --owner demo` finds them.
DEMO_OWNER = "demo"
#: How long the session the demo leaves behind lives without a call.
KEPT_TTL_SECONDS = 3600.0
STEPS = 6


class _Narrator:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        self.console.print(f"\n[bold cyan][{self.step}/{STEPS}][/bold cyan] [bold]{text}[/bold]")

    def say(self, text: str, style: str = "") -> None:
        self.console.print(f"      {text}", style=style, highlight=False, markup=False)

    def shell(self, command: str, output: str = "") -> None:
        self.console.print(f"      $ {command}", style="dim", highlight=False, markup=False)
        for line in output.rstrip("\n").splitlines():
            self.say(line)


def _outcome(envelope: dict[str, Any]) -> str:
    """An envelope in one line: its code, and the error it reports (the envelope's, or the one
    a cell raised, which the code backend answers as data)."""
    data = envelope.get("data")
    error: Any = data.get("error") or data.get("error_type") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = f"{error.get('type')}: {error.get('message')}"
    if envelope["code"] != 0:
        error = error or envelope["message"]
    return f"code {envelope['code']}" + (f", {error}" if error else "")


async def run_demo(
    address: str | None = None,
    namespace: str | None = None,
    *,
    ui_url: str | None = None,
    console: Console | None = None,
) -> bool:
    """Narrate a bash and a code session, a shared search index and a reinitialize; leave the
    bash session running and print how to reach it. True when every step answered as expected."""
    console = console or Console(highlight=False)
    say = _Narrator(console)
    sandbox_id = f"demo-{uuid.uuid4().hex[:6]}"
    checks: dict[str, bool] = {}
    sandbox = Sandbox(
        sandbox_id, address, namespace, user_id=DEMO_OWNER, agent_id="demo", destroy_on_exit=False
    )
    async with sandbox:
        bash_id = f"{sandbox_id}:bash"
        say.title(f"A bash session is a Temporal workflow: {bash_id}")
        created = await sandbox.create_session("bash", {"cwd": "/tmp"}, ttl=KEPT_TTL_SECONDS)
        checks["create"] = created["status"] == "success"
        say.say(f"instance {created['session_id']} on worker {created['worker']}")

        say.title("Two calls: the shell keeps its directory and variables between them")
        first = "mkdir -p demo && cd demo && export X=42"
        await sandbox.execute("bash:run", {"command": first})
        say.shell(first)
        run = await sandbox.execute("bash:run", {"command": "echo cwd=$PWD X=$X"})
        say.shell("echo cwd=$PWD X=$X", (run.get("data") or {}).get("stdout", _outcome(run)))
        checks["bash"] = run["code"] == 0 and "X=42" in run["data"]["stdout"]

        say.title("A mistake is an answer with a code, not a stack trace")
        missing = await sandbox.execute("python:missing", {})
        say.say(f"execute('python:missing') -> {_outcome(missing)}")
        checks["envelope"] = missing["code"] != 0

        say.title("A code session: an interpreter whose names persist between cells")
        await sandbox.create_session("code")
        await sandbox.execute("code:execute", {"code": "import math\nr = 2"})
        cell = await sandbox.execute("code:execute", {"code": "round(math.pi * r**2, 3)"})
        result = (cell.get("data") or {}).get("result")
        say.say(">>> import math; r = 2")
        say.say(f">>> round(math.pi * r**2, 3)  ->  {result if result else _outcome(cell)}")
        checks["code"] = cell["code"] == 0 and result == "12.566"
        reinit = await sandbox.reinitialize("code")
        gone = await sandbox.execute("code:execute", {"code": "r"})
        say.say("reinitialize('code'): a fresh interpreter, where r is gone")
        say.say(f">>> r  ->  {_outcome(gone)}")
        checks["reinitialize"] = reinit["status"] == "success" and "NameError" in _outcome(gone)

        say.title("A shared tool needs no session: a search over the bundled documents")
        query = "what happens when a session's TTL passes"
        found = await sandbox.execute("rag:search", {"query": query, "top_k": 1})
        hits = (found.get("data") or {}).get("results") or []
        say.say(f"rag:search {query!r}")
        say.say(f"-> {hits[0]['source']}" if hits else f"-> {_outcome(found)}")
        checks["rag"] = found["code"] == 0 and bool(hits) and hits[0]["source"] == "ttl.md"

        say.title("Sessions end by destroy, or by their TTL; one stays for you")
        listed = await sandbox.list_sessions()
        await sandbox.destroy_session("code")
        say.say("destroy_session('code'): its interpreter is cleaned up, its history stays")
        console.print(_sessions_table(listed, destroyed={"code"}))

    ok = all(checks.values())
    _print_next_steps(console, bash_id, ui_url and f"{ui_url}/namespaces/{namespace or 'default'}")
    failed = ", ".join(name for name, good in checks.items() if not good)
    console.print(
        "\n[bold green]demo succeeded[/bold green]"
        if ok
        else f"\n[bold red]demo FAILED[/bold red] at: {failed}"
    )
    return ok


def _sessions_table(sessions: list[dict[str, Any]], *, destroyed: set[str]) -> Table:
    now = datetime.now(UTC)
    table = Table(title="the demo's sessions", title_justify="left")
    for column in ("session (workflow id)", "type", "calls", "state", "expires"):
        table.add_column(column)
    for s in sorted(sessions, key=lambda s: s["resource_type"]):
        gone = s["resource_type"] in destroyed
        deadline = datetime.fromisoformat(s["deadline"]) if s.get("deadline") else None
        expires = "" if gone or deadline is None else f"in {_minutes(deadline - now)}"
        table.add_row(
            s["workflow_id"],
            s["resource_type"],
            str(s.get("call_count", "")),
            "destroyed" if gone else s["status"],
            expires,
        )
    return table


def _minutes(left: Any) -> str:
    seconds = max(0, int(left.total_seconds()))
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"


def _print_next_steps(console: Console, session: str, ui_url: str | None) -> None:
    command = '\'{"command": "echo $PWD $X"}\''
    lines = [
        f"Left running for you: [bold]{session}[/bold] (owner {DEMO_OWNER}; it expires an hour "
        "after its last call). In another terminal, from this folder:",
        "  source .venv/bin/activate          # durable-sessions, temporal and python on PATH",
        f"  durable-sessions sessions ls --owner {DEMO_OWNER}",
        f"  durable-sessions sessions exec {session} bash:run {command}",
        f"  durable-sessions sessions tail {session}",
        f"  temporal workflow query --workflow-id {session} --name describe -o json",
    ]
    if ui_url:
        lines.append(f"  UI: {ui_url}/workflows/{session}")
    # soft_wrap: a command stays on one line in a narrow terminal or a pipe, to copy whole.
    console.print("\n" + "\n".join(lines), highlight=False, soft_wrap=True)
