"""What every `durable-sessions sessions` command shares: its options, the one-line failure,
and running a command's coroutine."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from temporalio.service import RPCError

from client import SessionError
from client.transport import checked_id
from contract import DEFAULT_TASK_QUEUE
from runtime.connection import TemporalUnreachable

T = TypeVar("T")


class Failed(click.ClickException):
    """A refusal or failure said in one line on stderr; exit code 1."""


def run(coro: Awaitable[T]) -> T:
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


def connection(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command takes: where Temporal is, and JSON output."""
    f = click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")(f)
    f = click.option("--namespace", help="namespace (default: $TEMPORAL_NAMESPACE, then default)")(
        f
    )
    f = click.option(
        "--address", help="Temporal address (default: $TEMPORAL_ADDRESS, then localhost:7233)"
    )(f)
    return f


task_queue_option = click.option(
    "--task-queue",
    default=lambda: os.environ.get("SESSIONS_TASK_QUEUE", DEFAULT_TASK_QUEUE),
    show_default="$SESSIONS_TASK_QUEUE or durable-sessions",
    help="the sessions' task queue (named when no worker answers)",
)


def checked_session_id(value: str) -> str:
    try:
        return checked_id(value, "session id")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
