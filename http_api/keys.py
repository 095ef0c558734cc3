"""API keys: who a caller is. Each key maps to one user id (and an admin flag and limits); only
its SHA-256 digest is stored, so a leaked keys file or environment grants nothing.

One key per line (in ``DURABLE_SESSIONS_API_KEYS`` lines may also be separated by ``;``)::

    # user id   digest of the key        options
    alice       sha256:5e884898da2804...  sessions=10 rate=20 burst=40
    ops         sha256:a665a45920422f...  admin
    build       sha256:2c26b46b68ffc6...  network memory_mb=4096 workspace_mb=4096

What a key's sessions may ask of their sandbox above the defaults is the key's too (nothing, unless
its line says: ``network``, ``memory_mb=N``, ``processes=N``, ... as in
:mod:`backends.jail_policy`); ``isolation=none`` is refused here, whatever the key.

``durable-sessions http-key alice`` makes a key and prints its line. A key is 32 random bytes, so
one unsalted hash is as strong as a slow one and costs microseconds per request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from backends.jail_policy import JailCeiling, is_token, parse_allow

#: Key lines (newline- or ``;``-separated), and a file of them.
KEYS_ENV = "DURABLE_SESSIONS_API_KEYS"
KEYS_FILE_ENV = "DURABLE_SESSIONS_API_KEYS_FILE"
KEY_PREFIX = "dsk_"
_ID = re.compile(r"^[A-Za-z0-9._@:-]{1,200}$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class ApiKey:
    """One configured key: the user it acts for, and its limits (None: the server's default)."""

    user_id: str
    digest: bytes
    admin: bool = False
    max_sessions: int | None = None
    rate: float | None = None
    burst: int | None = None
    #: What its sessions may ask of their sandbox above the defaults (default: nothing).
    ceiling: JailCeiling = JailCeiling()

    @property
    def key_id(self) -> str:
        """A short, non-secret name for the key (for logs and rate buckets)."""
        return f"{self.user_id}#{self.digest.hex()[:8]}"


def digest_of(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key(
    user_id: str,
    *,
    admin: bool = False,
    max_sessions: int | None = None,
    rate: float | None = None,
    burst: int | None = None,
    allow: str = "",
) -> tuple[str, str]:
    """A fresh key and the line that configures it: ``(key, line)``. Give the key to the user;
    put the line in the keys file. ``allow``: what its sessions may ask above the defaults
    (``"network,memory_mb=4096"``)."""
    if not _ID.match(user_id):
        raise ValueError(f"user id {user_id!r} must be 1-200 of A-Z a-z 0-9 . _ @ : -")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    options = ["admin"] if admin else []
    for name, value in (("sessions", max_sessions), ("rate", rate), ("burst", burst)):
        if value is not None:
            options.append(f"{name}={value:g}")
    options += parse_allow(allow, none_possible=False).tokens()
    line = " ".join([user_id, f"sha256:{digest_of(key).hex()}", *options])
    return key, line


def parse_line(line: str) -> ApiKey:
    """One key line; ValueError naming what is wrong (never echoing a secret)."""
    fields = line.split()
    if len(fields) < 2:
        raise ValueError("a key line is '<user id> sha256:<hex digest> [admin] [sessions=N] ...'")
    user_id, digest, *options = fields
    if not _ID.match(user_id):
        raise ValueError(f"user id {user_id!r} must be 1-200 of A-Z a-z 0-9 . _ @ : -")
    found = _DIGEST.match(digest)
    if found is None:
        raise ValueError(
            f"the key of {user_id!r} must be stored as sha256:<64 hex digits> "
            "(make one with `durable-sessions http-key`), never as the key itself"
        )
    values: dict[str, float] = {}
    admin = False
    allowances: list[str] = []
    for option in options:
        name, _, raw = option.partition("=")
        if option == "admin":
            admin = True
        elif is_token(option):
            allowances.append(option)
        elif name in ("sessions", "rate", "burst") and raw:
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"{user_id}: {name} must be a number, got {raw!r}") from None
            if values[name] <= 0 and name != "sessions":
                raise ValueError(f"{user_id}: {name} must be more than 0")
            if values[name] < 0:
                raise ValueError(f"{user_id}: {name} must be 0 or more")
        else:
            raise ValueError(
                f"{user_id}: unknown option {option!r} (admin, sessions=, rate=, burst=, "
                "network, memory_mb=, processes=, ...)"
            )
    try:
        ceiling = parse_allow(allowances, none_possible=False)
    except ValueError as exc:
        raise ValueError(f"{user_id}: {exc}") from None
    return ApiKey(
        user_id=user_id,
        digest=bytes.fromhex(found.group(1)),
        admin=admin,
        max_sessions=int(values["sessions"]) if "sessions" in values else None,
        rate=values.get("rate"),
        burst=int(values["burst"]) if "burst" in values else None,
        ceiling=ceiling,
    )


def parse_lines(text: str, *, where: str) -> list[ApiKey]:
    keys = []
    for number, raw in enumerate(re.split(r"[\n;]", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            keys.append(parse_line(line))
        except ValueError as exc:
            raise ValueError(f"{where}, entry {number}: {exc}") from None
    return keys


class KeyStore:
    """The configured keys. Empty means no authentication (the server then listens on
    127.0.0.1 only)."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys = list(keys)

    @classmethod
    def load(
        cls, keys_file: str | Path | None = None, environ: Mapping[str, str] = os.environ
    ) -> KeyStore:
        """Keys from ``DURABLE_SESSIONS_API_KEYS`` and from a keys file (the argument, else
        ``DURABLE_SESSIONS_API_KEYS_FILE``)."""
        keys = parse_lines(environ.get(KEYS_ENV, ""), where=KEYS_ENV)
        path = keys_file or environ.get(KEYS_FILE_ENV)
        if path:
            keys += parse_lines(Path(path).read_text(), where=str(path))
        return cls(keys)

    @property
    def configured(self) -> bool:
        return bool(self.keys)

    def verify(self, key: str) -> ApiKey | None:
        """The entry for a presented key, or None. Every entry is compared, in constant time."""
        presented = digest_of(key)
        match = None
        for entry in self.keys:
            if hmac.compare_digest(entry.digest, presented):
                match = entry
        return match
