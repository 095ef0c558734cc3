"""`durable-sessions sessions ls`: sessions found by a visibility query on their search
attributes (no worker asked)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from cli.sessions_common import connection, run
from cli.sessions_format import ago, emit_json, rich_console, state_text
from client.transport import checked_id
from client.workflow_api import SessionQuery, SessionWorkflows, session_kind
from contract import (
    AgentIdAttr,
    DeadlineAttr,
    ParentSessionAttr,
    ResourceTypeAttr,
    SandboxIdAttr,
    SessionNameAttr,
    SessionStateAttr,
    SessionStatus,
    UserIdAttr,
)
from runtime.connection import connect


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
        "parent": attrs.get(ParentSessionAttr),
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


@click.command("ls")
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
@click.option(
    "--tree", is_flag=True, help="forked sessions under the session they were forked from"
)
@connection
def ls(
    owner: str | None,
    states: tuple[str, ...],
    resource_type: str | None,
    sandbox: str | None,
    include_closed: bool,
    temporary: bool,
    limit: int,
    quiet: bool,
    tree: bool,
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

    rows = run(go())
    depths = {row["session_id"]: 0 for row in rows}
    if tree:
        rows, depths = as_tree(rows)
    if as_json:
        emit_json(rows)
        return
    if quiet:
        for row in rows:
            click.echo(row["session_id"])
        return
    console = rich_console()
    if not rows:
        console.print(f"no sessions match: {escape(str(query))}")
        return
    now = datetime.now(UTC)
    table = Table(title=f"{len(rows)} session{'s' if len(rows) != 1 else ''}", title_justify="left")
    for column in ("session", "owner", "type", "state", "name", "expires", "started"):
        table.add_column(column, no_wrap=column == "session")
    for row in rows:
        depth = depths[row["session_id"]]
        table.add_row(
            ("   " * (depth - 1) + "└─ " if depth else "") + row["session_id"],
            escape(row["owner"] or ""),
            escape(row["resource_type"] or ""),
            state_text(row["state"]),
            escape(row["name"]),
            ago(row["deadline"], now) if row["deadline"] else "",
            ago(row["started_at"], now),
        )
    console.print(table)


def as_tree(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows with each forked session right under its parent (newest first among
    siblings), and each one's depth; a session whose parent is not listed is a root."""
    listed = {row["session_id"] for row in rows}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        parent = row["parent"] if row["parent"] in listed else None
        children.setdefault(parent, []).append(row)
    ordered: list[dict[str, Any]] = []
    depths: dict[str, int] = {}

    def visit(row: dict[str, Any], depth: int) -> None:
        if row["session_id"] in depths:  # a cycle cannot happen; never loop on one
            return
        ordered.append(row)
        depths[row["session_id"]] = depth
        for child in children.get(row["session_id"], []):
            visit(child, depth + 1)

    for root in children.get(None, []):
        visit(root, 0)
    return ordered, depths
