"""How `durable-sessions sessions` prints: Rich tables and lines, times as a person reads
them, JSON."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def rich_console() -> Console:
    # Wide enough for ids and messages when the output is not a terminal (a pipe, a test).
    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def ago(when: datetime | None, now: datetime | None = None) -> str:
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


def local(when: datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else ""


def state_text(state: str) -> str:
    color = {
        "active": "green",
        "idle": "cyan",
        "starting": "yellow",
        "paused": "magenta",
        "error": "red",
    }.get(state, "dim")
    return f"[{color}]{state}[/{color}]"


def events_table(events: list[dict[str, Any]], *, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "at", "kind", "tool", "code", "message"):
        table.add_column(column, justify="right" if column in ("id", "code") else "left")
    for event in events:
        table.add_row(*event_cells(event))
    return table


def event_cells(event: dict[str, Any]) -> list[str]:
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


def print_envelope(envelope: dict[str, Any]) -> None:
    console = rich_console()
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
