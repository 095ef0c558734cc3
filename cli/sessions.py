"""`durable-sessions sessions`: an operator's view of the sessions on a Temporal server.

    durable-sessions sessions ls [--owner U] [--state S] [--type T] [--all] [--json | -q]
    durable-sessions sessions show ID            the session's view and its last events
    durable-sessions sessions events ID          a page of its event log
    durable-sessions sessions tail ID            follow its event log until it closes
    durable-sessions sessions exec ID TOOL '{"param": ...}'
    durable-sessions sessions destroy ID...

An ID is a session's workflow id: ``<sandbox_id>:<resource_type>`` for a Sandbox's session,
``sess_...`` for a SessionManager's. Listing is a Temporal visibility query on the search
attributes the sessions set (``SessionUserId``, ``SessionState``, ``ResourceType``...), so it
needs no worker; ``show``, ``events`` and ``tail`` ask the session itself (a query, which a
worker answers); ``exec`` and ``destroy`` act as an operator (admin requests), like
``SessionManager(admin=True)``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from client import SessionError, SessionManager
from client.errors import is_gone
from client.transport import QUERY_TIMEOUT, checked_id
from client.workflow_api import SessionQuery, SessionWorkflows, session_kind
from contract import (
    DEFAULT_TASK_QUEUE,
    AgentIdAttr,
    DeadlineAttr,
    DestroyRequest,
    EventsQuery,
    ResourceTypeAttr,
    SandboxIdAttr,
    SessionNameAttr,
    SessionStateAttr,
    SessionStatus,
    SessionView,
    UserIdAttr,
)
from runtime.connection import TemporalUnreachable, connect

T = TypeVar("T")

#: How many of a session's last events ``show`` prints.
SHOW_EVENTS = 5


class Failed(click.ClickException):
    """A refusal or failure said in one line on stderr; exit code 1."""


def _console() -> Console:
    # Wide enough for ids and messages when the output is not a terminal (a pipe, a test).
    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def _run(coro: Awaitable[T]) -> T:
    """Run a command's coroutine; Temporal's failures become one line a person reads."""

    async def guarded() -> T:
        try:
            return await coro
        except TemporalUnreachable as exc:
            raise Failed(str(exc)) from None
        except SessionError as exc:
            raise Failed(exc.message if exc.code == 0 else f"[{exc.code}] {exc.message}") from None
        except RPCError as exc:
            raise Failed(f"Temporal refused: {exc.message} ({exc.status.name})") from None

    return asyncio.run(guarded())


def _connection(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command takes: where Temporal is, and JSON output."""
    f = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")(f)
    f = click.option("--namespace", help="namespace (default: $TEMPORAL_NAMESPACE, then default)")(
        f
    )
    f = click.option(
        "--address", help="Temporal address (default: $TEMPORAL_ADDRESS, then localhost:7233)"
    )(f)
    return f


_task_queue_option = click.option(
    "--task-queue",
    default=lambda: os.environ.get("SESSIONS_TASK_QUEUE", DEFAULT_TASK_QUEUE),
    show_default="$SESSIONS_TASK_QUEUE or durable-sessions",
    help="the sessions' task queue (named when no worker answers)",
)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _ago(when: datetime | None, now: datetime | None = None) -> str:
    """``when`` as a person reads it next to now: "in 4m 10s", "2m 5s ago"."""
    if when is None:
        return ""
    now = now or datetime.now(UTC)
    seconds = (when - now).total_seconds()
    text = _span(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _span(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def _local(when: datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else ""


# --- ls ----------------------------------------------------------------------------------------


def listing_query(
    *,
    owner: str | None = None,
    states: Iterable[str] = (),
    resource_type: str | None = None,
    sandbox: str | None = None,
    include_closed: bool = False,
    temporary: bool = True,
) -> SessionQuery:
    """The visibility query ``ls`` sends (the Temporal UI takes the same text); only id
    characters pass in its values (no quoting tricks)."""
    try:
        # Checked here too, so a refusal names the option as a person typed it.
        named = {"owner": owner, "resource type": resource_type, "sandbox": sandbox}
        for what, value in named.items():
            if value:
                checked_id(value, what)
        return SessionQuery(
            running=None if include_closed else True,
            user_id=owner or None,
            resource_type=resource_type or None,
            sandbox_id=sandbox or None,
            states=tuple(SessionStatus(s).value for s in states),
            temporary=temporary,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def listing_row(execution: WorkflowExecution) -> dict[str, Any]:
    """What visibility knows of one session (no worker asked)."""
    attrs = execution.typed_search_attributes
    running = execution.status is WorkflowExecutionStatus.RUNNING
    state = attrs.get(SessionStateAttr)
    if not state:
        state = (
            "starting" if running else (execution.status.name.lower() if execution.status else "")
        )
    return {
        "session_id": execution.id,
        "sandbox_id": attrs.get(SandboxIdAttr),
        "owner": attrs.get(UserIdAttr),
        "agent": attrs.get(AgentIdAttr),
        "resource_type": attrs.get(ResourceTypeAttr),
        "state": state,
        "kind": session_kind(execution),
        "name": attrs.get(SessionNameAttr) or "",
        "deadline": attrs.get(DeadlineAttr) if running else None,
        "started_at": execution.start_time,
        "closed_at": execution.close_time,
        "running": running,
    }


async def list_sessions(client: Client, query: SessionQuery, *, limit: int) -> list[dict[str, Any]]:
    """Matching sessions, newest first."""
    rows: list[dict[str, Any]] = []
    async for execution in SessionWorkflows(client).list(query):  # newest first
        rows.append(listing_row(execution))
        if len(rows) >= limit:
            break
    rows.sort(key=lambda r: r["started_at"], reverse=True)
    return rows


@click.group(
    name="sessions",
    help="An operator's view of the sessions on a Temporal server: list, show, follow, call and "
    "destroy them.",
    epilog="IDs are workflow ids: <sandbox>:<type> (a Sandbox's session) or sess_... (a "
    "SessionManager's).",
)
def sessions() -> None:
    pass


@sessions.command("ls")
@click.option("--owner", help="only this user's sessions (SessionUserId)")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in SessionStatus]),
    help="only sessions in this state (SessionState); repeat for several",
)
@click.option(
    "--type", "resource_type", help="only this resource type (ResourceType): bash, code..."
)
@click.option("--sandbox", help="only this sandbox's sessions (SandboxId)")
@click.option("--all", "include_closed", is_flag=True, help="closed sessions too")
@click.option("--temporary", is_flag=True, help="one-call temporary sessions too")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="print the session ids only, newest first")
@_connection
def ls(
    owner: str | None,
    states: tuple[str, ...],
    resource_type: str | None,
    sandbox: str | None,
    include_closed: bool,
    temporary: bool,
    limit: int,
    quiet: bool,
    address: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """List sessions, newest first (live ones unless --all)."""
    query = listing_query(
        owner=owner,
        states=states,
        resource_type=resource_type,
        sandbox=sandbox,
        include_closed=include_closed or any(SessionStatus(s).is_final for s in states),
        temporary=temporary,
    )

    async def go() -> list[dict[str, Any]]:
        client = await connect(address, namespace)
        return await list_sessions(client, query, limit=limit)

    rows = _run(go())
    if as_json:
        _emit_json(rows)
        return
    if quiet:
        for row in rows:
            click.echo(row["session_id"])
        return
    console = _console()
    if not rows:
        console.print(f"no sessions match: {escape(str(query))}")
        return
    now = datetime.now(UTC)
    table = Table(title=f"{len(rows)} session{'s' if len(rows) != 1 else ''}", title_justify="left")
    for column in ("session", "owner", "type", "state", "name", "expires", "started"):
        table.add_column(column, no_wrap=column == "session")
    for row in rows:
        table.add_row(
            row["session_id"],
            escape(row["owner"] or ""),
            escape(row["resource_type"] or ""),
            _state_text(row["state"]),
            escape(row["name"]),
            _ago(row["deadline"], now) if row["deadline"] else "",
            _ago(row["started_at"], now),
        )
    console.print(table)


def _state_text(state: str) -> str:
    color = {
        "active": "green",
        "idle": "cyan",
        "starting": "yellow",
        "paused": "magenta",
        "error": "red",
    }.get(state, "dim")
    return f"[{color}]{state}[/{color}]"


# --- show, events, tail ---------------------------------------------------------------------------


async def _describe(client: Client, session_id: str) -> SessionView:
    try:
        view = await SessionWorkflows(client).describe(session_id)
    except RPCError as exc:
        if is_gone(exc):
            raise Failed(f"no session {session_id!r} on {_where(client)}") from None
        if exc.status.name in ("DEADLINE_EXCEEDED", "CANCELLED"):
            raise Failed(
                f"session {session_id} did not answer within {QUERY_TIMEOUT.seconds} s: is a "
                "worker running? (`python worker.py`, or `./run.sh`)"
            ) from None
        raise
    return view


async def _events(client: Client, session_id: str, query: EventsQuery) -> dict[str, Any]:
    page = await SessionWorkflows(client).events(session_id, query)
    answer: dict[str, Any] = page.model_dump(mode="json")
    return answer


def _where(client: Client) -> str:
    return f"{client.service_client.config.target_host} (namespace {client.namespace!r})"


def _session_id(value: str) -> str:
    try:
        return checked_id(value, "session id")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@sessions.command()
@click.argument("session_id")
@_connection
def show(session_id: str, address: str | None, namespace: str | None, as_json: bool) -> None:
    """One session: state, owner, instance, deadline, calls, and its last events."""
    session_id = _session_id(session_id)

    async def go() -> tuple[SessionView, dict[str, Any]]:
        client = await connect(address, namespace)
        view = await _describe(client, session_id)
        page = await _events(client, session_id, EventsQuery(reverse=True, limit=SHOW_EVENTS))
        return view, page

    view, page = _run(go())
    if as_json:
        _emit_json({**view.model_dump(mode="json"), "last_events": page["events"][::-1]})
        return
    now = datetime.now(UTC)
    table = Table(show_header=False, title=f"session {view.workflow_id}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        (
            "state",
            _state_text(view.status.value) + (f"  {escape(view.message)}" if view.message else ""),
        ),
        ("owner", view.user_id or "-"),
        ("agent", view.agent_id or "-"),
        ("sandbox", view.sandbox_id),
        ("type", view.resource_type or "(record, no resource)"),
        ("name", view.name or "-"),
        ("instance", f"{view.session_id or '-'} on {view.worker or '-'}"),
        ("created", f"{_local(view.created_at)} ({_ago(view.created_at, now)})"),
        ("last activity", f"{_local(view.last_activity)} ({_ago(view.last_activity, now)})"),
        (
            "deadline",
            f"{_local(view.deadline)} ({_ago(view.deadline, now)}), TTL {view.ttl_seconds:g} s, "
            f"then {view.on_expire}"
            if view.deadline and not view.status.is_final
            else "-",
        ),
        ("calls", str(view.call_count)),
        ("checkpoints", str(view.checkpoint_count)),
        ("tools", ", ".join(view.tools) or "-"),
    ]
    if view.metadata:
        rows.append(("metadata", json.dumps(view.metadata, default=str)))
    for field, value in rows:
        table.add_row(field, value if field == "state" else escape(value))  # names, metadata
    console = _console()
    console.print(table)
    if page["events"]:
        console.print(_events_table(page["events"][::-1], title="last events"))


def _events_table(events: list[dict[str, Any]], *, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "at", "kind", "tool", "code", "message"):
        table.add_column(column, justify="right" if column in ("id", "code") else "left")
    for event in events:
        table.add_row(*_event_cells(event))
    return table


def _event_cells(event: dict[str, Any]) -> list[str]:
    at = datetime.fromisoformat(event["at"]).astimezone().strftime("%H:%M:%S")
    message = event.get("message") or ""
    if event.get("role"):
        message = f"{event['role']}: {json.dumps(event.get('content'), default=str)}"
    elif not message and event.get("content") is not None:
        message = json.dumps(event["content"], default=str)
    code = event.get("code")
    code_text = "" if event.get("kind") not in ("execute", "call") and not code else str(code)
    cells = [str(event["id"]), at, event["kind"], event.get("tool") or "", code_text, message[:120]]
    return [escape(cell) for cell in cells]  # the log holds callers' text: never Rich markup


@sessions.command()
@click.argument("session_id")
@click.option("--kind", help="only events of this kind (execute, state, message...)")
@click.option("--from", "start_id", type=click.IntRange(1), help="from this event id on")
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True)
@click.option("--reverse", is_flag=True, help="newest first")
@_connection
def events(
    session_id: str,
    kind: str | None,
    start_id: int | None,
    limit: int,
    reverse: bool,
    address: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """A page of a session's event log (oldest first unless --reverse)."""
    session_id = _session_id(session_id)
    query = EventsQuery(start_id=start_id, kind=kind, limit=limit, reverse=reverse)

    async def go() -> dict[str, Any]:
        client = await connect(address, namespace)
        await _describe(client, session_id)  # a clear "no session" / "no worker" first
        return await _events(client, session_id, query)

    page = _run(go())
    if as_json:
        _emit_json(page)
        return
    console = _console()
    if not page["events"]:
        console.print("no events")
        return
    console.print(_events_table(page["events"]))
    notes = []
    if page["has_more"]:
        last = page["events"][-1]["id"]
        notes.append(f"more: --from {last + 1}" if not reverse else "more: older events")
    if page["dropped"]:
        notes.append(f"{page['dropped']} older events left the log")
    if notes:
        console.print("; ".join(notes), style="dim")


@sessions.command()
@click.argument("session_id")
@click.option("--kind", help="only events of this kind")
@click.option("-n", "--lines", type=click.IntRange(0, 100), default=10, show_default=True,
              help="events to print before following")  # fmt: skip
@click.option("--interval", type=click.FloatRange(0.1), default=1.0, show_default=True,
              help="seconds between looks")  # fmt: skip
@_connection
def tail(
    session_id: str,
    kind: str | None,
    lines: int,
    interval: float,
    address: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Follow a session's event log, one line per event, until the session closes (or Ctrl-C).

    With --json, one JSON object per line.
    """
    session_id = _session_id(session_id)
    console = _console()

    def emit(event: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(event, default=str))
        else:
            cells = _event_cells(event)
            console.print(
                f"[dim]{cells[0]:>4} {cells[1]}[/dim] [bold]{cells[2]}[/bold] "
                + " ".join(c for c in cells[3:] if c),
                markup=True,
                highlight=False,
            )

    async def go() -> str:
        client = await connect(address, namespace)
        view = await _describe(client, session_id)
        # Where following starts, read first: an event recorded meanwhile is followed, not lost.
        newest = await _events(client, session_id, EventsQuery(reverse=True, limit=1))
        next_id = newest["events"][0]["id"] + 1 if newest["events"] else 1
        if lines and next_id > 1:
            back = EventsQuery(kind=kind, reverse=True, limit=lines, end_id=next_id - 1)
            for event in (await _events(client, session_id, back))["events"][::-1]:
                emit(event)
        if not as_json:
            console.print(f"[dim]following {session_id} ({view.status.value}); Ctrl-C stops[/dim]")
        while True:
            execution = await SessionWorkflows(client).execution(session_id)
            closed = execution.status is not WorkflowExecutionStatus.RUNNING
            while True:  # everything new, a page at a time
                try:
                    page = await _events(
                        client, session_id, EventsQuery(start_id=next_id, kind=kind, limit=100)
                    )
                except RPCError:
                    if closed:  # no worker to answer for a closed session: nothing more
                        break
                    raise
                for event in page["events"]:
                    emit(event)
                    next_id = event["id"] + 1
                if not page["has_more"] or not page["events"]:
                    break
            if closed:
                final = await _describe_quietly(client, session_id)
                return final
            await asyncio.sleep(interval)

    try:
        state = _run(go())
    except KeyboardInterrupt:
        return
    if not as_json:
        console.print(f"[dim]session {session_id} ended: {state}[/dim]")


async def _describe_quietly(client: Client, session_id: str) -> str:
    try:
        return (await _describe(client, session_id)).status.value
    except Exception:
        return "closed"


# --- exec, destroy ------------------------------------------------------------------------------


def _params(raw: str | None, pairs: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if raw:
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="PARAMS") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="PARAMS")
        params.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value  # a bare word is a string
    return params


@sessions.command("exec")
@click.argument("session_id")
@click.argument("tool")
@click.argument("params", required=False)
@click.option("-p", "--param", "pairs", multiple=True, metavar="KEY=VALUE",
              help="one parameter (VALUE as JSON, else a string); repeatable")  # fmt: skip
@_task_queue_option
@_connection
def exec_(
    session_id: str,
    tool: str,
    params: str | None,
    pairs: tuple[str, ...],
    task_queue: str,
    address: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Run TOOL (e.g. bash:run) on a session, as an operator; PARAMS is a JSON object.

    Exits 0 when the call answered code 0, 1 otherwise.
    """
    session_id = _session_id(session_id)
    arguments = _params(params, pairs)

    async def go() -> dict[str, Any]:
        client = await connect(address, namespace)
        manager = SessionManager(client=client, admin=True, task_queue=task_queue)
        return await manager.execute(session_id, tool, arguments)

    envelope = _run(go())
    if as_json:
        _emit_json(envelope)
    else:
        _print_envelope(envelope)
    if envelope["code"] != 0:
        sys.exit(1)


def _print_envelope(envelope: dict[str, Any]) -> None:
    console = _console()
    code = envelope["code"]
    style = "green" if code == 0 else "red"
    console.print(f"[{style}]{code} {escape(envelope['message'])}[/{style}]", highlight=False)
    data = envelope.get("data")
    if isinstance(data, dict) and ("stdout" in data or "stderr" in data):
        if data.get("stdout"):
            click.echo(data["stdout"], nl=not data["stdout"].endswith("\n"))
        if data.get("stderr"):
            click.echo(data["stderr"], nl=not data["stderr"].endswith("\n"), err=True)
        rest = {k: v for k, v in data.items() if k not in ("stdout", "stderr")}
        if rest:
            console.print(json.dumps(rest, default=str), style="dim", highlight=False)
    elif data is not None:
        click.echo(json.dumps(data, indent=2, default=str))


@sessions.command()
@click.argument("session_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--reason", default="destroyed by an operator", show_default=True)
@_task_queue_option
@_connection
def destroy(
    session_ids: tuple[str, ...],
    reason: str,
    task_queue: str,
    address: str | None,
    namespace: str | None,
    as_json: bool,
) -> None:
    """Destroy sessions (their resource is cleaned up first), as an operator.

    Exits 1 when any was not found or refused.
    """
    ids = [_session_id(s) for s in session_ids]

    async def go() -> dict[str, dict[str, Any]]:
        client = await connect(address, namespace)
        answers: dict[str, dict[str, Any]] = {}
        for session_id in ids:
            try:
                view = await _destroy(client, session_id, reason, task_queue)
                answers[session_id] = {"status": "destroyed", "state": view.status.value}
            except SessionError as exc:
                answers[session_id] = {"status": "error", "code": exc.code, "message": exc.message}
        return answers

    answers = _run(go())
    if as_json:
        _emit_json(answers)
    else:
        console = _console()
        for session_id, answer in answers.items():
            if answer["status"] == "destroyed":
                console.print(f"{session_id}: [green]{answer['state']}[/green]")
            else:
                message = escape(answer["message"])
                console.print(f"{session_id}: [red]{answer['code']} {message}[/red]")
    if any(a["status"] != "destroyed" for a in answers.values()):
        sys.exit(1)


async def _destroy(client: Client, session_id: str, reason: str, task_queue: str) -> SessionView:
    request = DestroyRequest(reason=reason, admin=True)
    return await SessionWorkflows(client, task_queue).destroy(session_id, request)


def main(argv: list[str]) -> int:
    """Run the group on ``argv`` (what follows ``sessions``); the exit code."""
    try:
        sessions.main(argv, prog_name="durable-sessions sessions", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
