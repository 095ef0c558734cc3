"""What a session's config may ask of its jail beyond the defaults: the operator's choice.

A session's config may lower its limits freely, but isolation ``none``, network access and any
resource bound above its default (``backends.jail_settings.SETTINGS``; for ``nice``, a niceness
below it) weaken the jail, so only an operator may allow them: the worker for every session it runs
(``--session-allow`` / ``$DURABLE_SESSIONS_SESSION_ALLOW``), an HTTP API key for the sessions
it opens (options in the keys file). Nothing allows more by default.

The syntax is one list of tokens (comma- or space-separated)::

    network                 sessions may ask "network": true
    isolation=none          sessions may run without a jail (worker only; never over HTTP/MCP)
    memory_mb=4096          the most a session may ask for memory_mb (any key of SETTINGS)
    nice=0                  the lowest niceness a session may ask (the default is 10)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from backends.jail_settings import SETTINGS

#: The worker's setting: tokens as described above (empty: nothing above the defaults).
ALLOW_ENV = "DURABLE_SESSIONS_SESSION_ALLOW"
#: Settings where a smaller value is the weaker jail (a lower niceness runs ahead of others).
_LOWER_IS_MORE = frozenset({"nice"})


class JailPolicyError(PermissionError):
    """A session config asks for more than its caller may have; names the setting."""

    def __init__(self, setting: str, asked: Any, allowed: Any, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.asked = asked
        self.allowed = allowed
        self.message = message


@dataclass(frozen=True)
class Audience:
    """Who enforces a ceiling, for the refusal's words: whose ceiling it is and how to raise it
    (``{option}`` becomes the token that would allow the request)."""

    whose: str
    how: str
    #: Whether isolation "none" can be allowed here at all (never over HTTP or MCP).
    none_possible: bool


WORKER = Audience(
    "this worker allows",
    f"the worker setting --session-allow {{option}} (or ${ALLOW_ENV})",
    none_possible=True,
)
HTTP_KEY = Audience(
    "this API key may ask", "the key's option {option} in the keys file", none_possible=False
)
MCP = Audience(
    "this MCP server allows",
    "SessionsMCPServer(allow=parse_allow('{option}'))",
    none_possible=False,
)


@dataclass(frozen=True)
class JailCeiling:
    """The most a session's config may ask: network, isolation "none", and per-setting tops."""

    network: bool = False
    isolation_none: bool = False
    #: (setting, top) pairs for settings raised above their default; a tuple keeps it hashable.
    raised: tuple[tuple[str, int], ...] = ()

    def allowed(self, setting: str) -> int:
        """The top (for ``nice``: the bottom) a session may ask for ``setting``."""
        return dict(self.raised).get(setting, SETTINGS[setting].default)

    def tokens(self) -> list[str]:
        """The tokens that make this ceiling (for a keys-file line or a command line)."""
        out = ["network"] if self.network else []
        if self.isolation_none:
            out.append("isolation=none")
        return out + [f"{k}={v}" for k, v in self.raised]

    def check(self, config: Mapping[str, Any], audience: Audience) -> None:
        """Raise :class:`JailPolicyError` for the first setting that asks too much.

        A value of the wrong type or outside its range is left to the backend, which refuses it
        as invalid (4007): this only judges what would be valid but is not allowed.
        """
        if config.get("isolation") == "none":
            if not audience.none_possible:
                raise JailPolicyError(
                    "isolation",
                    "none",
                    "bwrap",
                    "isolation 'none' (no sandbox) is never allowed here, whatever the key; "
                    "only a worker's operator can allow it, for trusted local use",
                )
            if not self.isolation_none:
                raise JailPolicyError(
                    "isolation",
                    "none",
                    "bwrap",
                    f"isolation 'none' (no sandbox) is not what {audience.whose}; the operator "
                    f"can allow it with {audience.how.format(option='isolation=none')} "
                    "(trusted local use only)",
                )
        if config.get("network") is True and not self.network:
            raise JailPolicyError(
                "network",
                True,
                False,
                f"network true is not what {audience.whose}; the operator can allow it with "
                f"{audience.how.format(option='network')}",
            )
        for setting, spec in SETTINGS.items():
            value = config.get(setting)
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            if not spec.low <= value <= spec.high:
                continue
            top = self.allowed(setting)
            lower = setting in _LOWER_IS_MORE
            if (value < top) if lower else (value > top):
                side = "below" if lower else "above"
                raise JailPolicyError(
                    setting,
                    value,
                    top,
                    f"{setting} {value} is {side} what {audience.whose} ({top}); the operator "
                    f"can raise it with {audience.how.format(option=f'{setting}={value}')}",
                )


def is_token(token: str) -> bool:
    """Is this a ceiling token (for parsers that mix them with options of their own)?"""
    name = token.partition("=")[0]
    return token == "network" or name == "isolation" or name in SETTINGS


def parse_allow(spec: str | Iterable[str], *, none_possible: bool = True) -> JailCeiling:
    """A ceiling from tokens (a string is split at commas and spaces); ValueError naming the
    token that is wrong. ``none_possible`` False refuses ``isolation=none`` (HTTP keys)."""
    tokens = re.split(r"[\s,]+", spec) if isinstance(spec, str) else list(spec)
    network = isolation_none = False
    raised: dict[str, int] = {}
    for token in (t.strip() for t in tokens):
        if not token:
            continue
        name, eq, raw = token.partition("=")
        if token == "network":
            network = True
        elif token == "isolation=none":
            if not none_possible:
                raise ValueError(
                    "isolation=none is never allowed over the HTTP API or MCP: no key may run "
                    "sessions without a sandbox"
                )
            isolation_none = True
        elif name in SETTINGS and eq:
            raised[name] = _top(name, raw)
        else:
            names = ", ".join(f"{k}=" for k in SETTINGS)
            raise ValueError(
                f"unknown session allowance {token!r} (network, isolation=none, {names})"
            )
    return JailCeiling(network, isolation_none, tuple(sorted(raised.items())))


def _top(setting: str, raw: str) -> int:
    spec = SETTINGS[setting]
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{setting}= must be an integer, not {raw!r}") from None
    if not spec.low <= value <= spec.high:
        raise ValueError(f"{setting}={value} is outside {spec.low}..{spec.high} ({spec.unit})")
    lower = setting in _LOWER_IS_MORE
    if (value > spec.default) if lower else (value < spec.default):
        raise ValueError(
            f"{setting}={value} would be {'above' if lower else 'below'} the default "
            f"({spec.default}): an allowance only lets sessions ask for more"
        )
    return value
