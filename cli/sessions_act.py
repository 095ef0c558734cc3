"""`durable-sessions sessions exec | destroy`: acting on sessions as an operator (admin
requests), like ``SessionManager(admin=True)``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from temporalio.client import Client

from cli.sessions_common import checked_session_id, connection, run, task_queue_option
from cli.sessions_format import emit_json, print_envelope, rich_console
from client import SessionError, SessionManager
from client.workflow_api import SessionWorkflows
from contract import DestroyRequest, SessionView
from runtime.connection import connect


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


@click.command("exec")
@click.argument("session_id")
@click.argument("tool")
@click.argument("params", required=False)
@click.option("-p", "--param", "pairs", multiple=True, metavar="KEY=VALUE",
              help="one parameter (VALUE as JSON, else a string); repeatable")  # fmt: skip
@task_queue_option
@connection
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
    session_id = checked_session_id(session_id)
    arguments = _params(params, pairs)

    async def go() -> dict[str, Any]:
        client = await connect(address, namespace)
        manager = SessionManager(client=client, admin=True, task_queue=task_queue)
        return await manager.execute(session_id, tool, arguments)

    envelope = run(go())
    if as_json:
        emit_json(envelope)
    else:
        print_envelope(envelope)
    if envelope["code"] != 0:
        sys.exit(1)


@click.command()
@click.argument("session_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--reason", default="destroyed by an operator", show_default=True)
@task_queue_option
@connection
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
    ids = [checked_session_id(s) for s in session_ids]

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

    answers = run(go())
    if as_json:
        emit_json(answers)
    else:
        console = rich_console()
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
