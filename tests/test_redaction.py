"""Secrets in tool parameters stay out of a session's event log."""

from __future__ import annotations

from client import Sandbox
from workflows.redaction import REDACTED, redact


def test_values_under_secret_names_are_replaced_at_any_depth() -> None:
    params = {
        "command": "deploy",
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc", "Accept": "json"},
        "items": [{"API_KEY": "k"}, {"name": "x"}],
        "db_passwd": "p",
        "access_token": "t",
        "author": "ada",  # not a secret: names are matched as words, not fragments like "auth"
    }
    assert redact(params) == {
        "command": "deploy",
        "password": REDACTED,
        "headers": {"Authorization": REDACTED, "Accept": "json"},
        "items": [{"API_KEY": REDACTED}, {"name": "x"}],
        "db_passwd": REDACTED,
        "access_token": REDACTED,
        "author": "ada",
    }
    assert params["password"] == "hunter2"  # the call itself keeps its parameters


def test_long_values_are_cut() -> None:
    cut = redact({"code": "x" * 5000, "many": list(range(50))})
    assert cut["code"].endswith("... (5000 chars)") and len(cut["code"]) < 300
    assert cut["many"][:20] == list(range(20)) and cut["many"][20] == "... 30 more"


async def test_the_event_log_shows_the_call_but_not_its_secret(sandbox: Sandbox) -> None:
    await sandbox.create_session("testkit")
    secret = "tk-51f0e9-very-secret"
    result = await sandbox.execute("testkit:login", {"user": "ada", "api_key": secret})
    assert result["code"] == 0 and result["data"]["key_length"] == len(secret), result
    events = await sandbox.get_events("testkit")
    call = [e for e in events["events"] if e["kind"] == "execute"][-1]
    assert call["tool"] == "testkit:login"
    assert call["content"]["params"] == {"user": "ada", "api_key": REDACTED}
    assert secret not in str(events)
