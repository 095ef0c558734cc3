"""`durable-sessions sessions show | events | tail`: what a session says of itself (a query,
which a worker answers)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from cli.sessions_common import Failed, checked_session_id, connection, run
from cli.sessions_format import (
    ago,
    emit_json,
    event_cells,
    events_table,
    local,
    rich_console,
    state_text,
)
from client.errors import is_gone
from client.transport import QUERY_TIMEOUT
from client.workflow_api import SessionWorkflows
from contract import EventsQuery, SessionView
from runtime.connection import connect

#: How many of a session's last events ``show`` prints.
SHOW_EVENTS = 5


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


@click.command()
@click.argument("session_id")
@connection
def show(session_id: str, address: str | None, namespace: str | None, as_json: bool) -> None:
    """One session: state, owner, instance, deadline, calls, and its last events."""
    session_id = checked_session_id(session_id)

    async def go() -> tuple[SessionView, dict[str, Any]]:
        client = await connect(address, namespace)
        view = await _describe(client, session_id)
        page = await _events(client, session_id, EventsQuery(reverse=True, limit=SHOW_EVENTS))
        return view, page

    view, page = run(go())
    if as_json:
        emit_json({**view.model_dump(mode="json"), "last_events": page["events"][::-1]})
        return
    now = datetime.now(UTC)
    table = Table(show_header=False, title=f"session {view.workflow_id}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        (
            "state",
            state_text(view.status.value) + (f"  {escape(view.message)}" if view.message else ""),
        ),
        ("owner", view.user_id or "-"),
        ("agent", view.agent_id or "-"),
        ("sandbox", view.sandbox_id),
        ("type", view.resource_type or "(record, no resource)"),
        ("name", view.name or "-"),
        ("instance", f"{view.session_id or '-'} on {view.worker or '-'}"),
        ("created", f"{local(view.created_at)} ({ago(view.created_at, now)})"),
        ("last activity", f"{local(view.last_activity)} ({ago(view.last_activity, now)})"),
        (
            "deadline",
            f"{local(view.deadline)} ({ago(view.deadline, now)}), TTL {view.ttl_seconds:g} s, "
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
    if view.parent_session:
        rows.append(("forked from", view.parent_session))
    if view.idle_suspend_seconds is not None:
        resume = "a call resumes it" if view.auto_resume else "a call answers 4007"
        rows.append(("idle suspend", f"after {view.idle_suspend_seconds:g} s; {resume}"))
    for field, value in rows:
        table.add_row(field, value if field == "state" else escape(value))  # names, metadata
    console = rich_console()
    console.print(table)
    if page["events"]:
        console.print(events_table(page["events"][::-1], title="last events"))


@click.command()
@click.argument("session_id")
@click.option("--kind", help="only events of this kind (execute, state, message...)")
@click.option("--from", "start_id", type=click.IntRange(1), help="from this event id on")
@click.option("--limit", type=click.IntRange(1, 100), default=50, show_default=True)
@click.option("--reverse", is_flag=True, help="newest first")
@connection
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
    session_id = checked_session_id(session_id)
    query = EventsQuery(start_id=start_id, kind=kind, limit=limit, reverse=reverse)

    async def go() -> dict[str, Any]:
        client = await connect(address, namespace)
        await _describe(client, session_id)  # a clear "no session" / "no worker" first
        return await _events(client, session_id, query)

    page = run(go())
    if as_json:
        emit_json(page)
        return
    console = rich_console()
    if not page["events"]:
        console.print("no events")
        return
    console.print(events_table(page["events"]))
    notes = []
    if page["has_more"]:
        last = page["events"][-1]["id"]
        notes.append(f"more: --from {last + 1}" if not reverse else "more: older events")
    if page["dropped"]:
        notes.append(f"{page['dropped']} older events left the log")
    if notes:
        console.print("; ".join(notes), style="dim")


@click.command()
@click.argument("session_id")
@click.option("--kind", help="only events of this kind")
@click.option("-n", "--lines", type=click.IntRange(0, 100), default=10, show_default=True,
              help="events to print before following")  # fmt: skip
@click.option("--interval", type=click.FloatRange(0.1), default=1.0, show_default=True,
              help="seconds between looks")  # fmt: skip
@connection
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
    session_id = checked_session_id(session_id)
    console = rich_console()

    def emit(event: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(event, default=str))
        else:
            cells = event_cells(event)
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
        state = run(go())
    except KeyboardInterrupt:
        return
    if not as_json:
        console.print(f"[dim]session {session_id} ended: {state}[/dim]")


async def _describe_quietly(client: Client, session_id: str) -> str:
    try:
        return (await _describe(client, session_id)).status.value
    except Exception:
        return "closed"
