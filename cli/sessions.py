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

The commands live beside this group: ``sessions_ls.py`` (ls), ``sessions_log.py`` (show, events,
tail) and ``sessions_act.py`` (exec, destroy); ``sessions_common.py`` holds their options and
one-line failures, ``sessions_format.py`` how they print.
"""

from __future__ import annotations

import click

from cli.sessions_act import destroy, exec_
from cli.sessions_log import events, show, tail
from cli.sessions_ls import ls


@click.group(
    name="sessions",
    help="An operator's view of the sessions on a Temporal server: list, show, follow, call and "
    "destroy them.",
    epilog="IDs are workflow ids: <sandbox>:<type> (a Sandbox's session) or sess_... (a "
    "SessionManager's).",
)
def sessions() -> None:
    pass


for command in (ls, show, events, tail, exec_, destroy):
    sessions.add_command(command)


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
