"""Read a shell's exported variables from ``export -p``, a builtin (no fork, unlike ``env -0``).

``export -p`` prints one ``declare -x NAME="value"`` per variable (``export NAME="value"`` in POSIX
mode): inside double quotes ``"``, ``\\``, ``$`` and a backquote are escaped with a backslash and a
newline stays as it is; a value with bytes the locale does not print is ANSI-C quoted instead
(``$'a\\001b'``). A variable exported but never set has no ``=value`` and is not in the
environment a program gets, nor is an exported array: both are skipped, as ``env`` would.
"""

from __future__ import annotations

import re

#: The command that prints them.
EXPORTS_COMMAND = "builtin export -p"

_HEAD = re.compile(rb"(?:declare|export)(?: -([A-Za-z-]+))? ([A-Za-z_][A-Za-z0-9_]*)")
_SIMPLE = {
    ord("a"): 7,
    ord("b"): 8,
    ord("e"): 27,
    ord("E"): 27,
    ord("f"): 12,
    ord("n"): 10,
    ord("r"): 13,
    ord("t"): 9,
    ord("v"): 11,
    ord("\\"): 92,
    ord("'"): 39,
    ord('"'): 34,
    ord("?"): 63,
}
_OCTAL = frozenset(b"01234567")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def parse_exports(text: bytes) -> dict[str, str]:
    """The variables ``export -p`` printed, as ``env`` would show them (UTF-8, errors replaced).

    Raises:
        ValueError: the text is not ``export -p``'s output (or is cut short).
    """
    try:
        return _parse(text)
    except IndexError:  # a quote or an array that never closes
        raise ValueError("export -p output ends inside a value") from None


def _parse(text: bytes) -> dict[str, str]:
    env: dict[str, str] = {}
    at = 0
    while at < len(text):
        head = _HEAD.match(text, at)
        if head is None:
            raise ValueError(f"unexpected export -p output at byte {at}")
        flags, name = head.group(1) or b"", head.group(2).decode()
        at = head.end()
        value: bytes | None = None
        if text.startswith(b'="', at):
            value, at = _double_quoted(text, at + 2)
        elif text.startswith(b"=$'", at):
            value, at = _ansi_c(text, at + 3)
        elif text.startswith(b"=(", at):  # an array: never in a program's environment
            at = _after_array(text, at + 2)
        if not text.startswith(b"\n", at):
            raise ValueError(f"unexpected export -p output after {name}")
        at += 1
        if value is not None and b"a" not in flags and b"A" not in flags:
            env[name] = value.decode("utf-8", errors="replace")
    return env


def _after_array(text: bytes, at: int) -> int:
    """Where an array's ``(...)`` ends; its quoted keys and values may hold anything."""
    while True:
        char = text[at]
        if char == 0x29:  # the closing parenthesis
            return at + 1
        if char == 0x22:
            _, at = _double_quoted(text, at + 1)
        elif text.startswith(b"$'", at):
            _, at = _ansi_c(text, at + 2)
        else:
            at += 1


def _double_quoted(text: bytes, at: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        char = text[at]
        if char == 0x22:  # the closing quote
            return bytes(out), at + 1
        if char == 0x5C:  # a backslash escapes the next byte
            at += 1
            char = text[at]
        out.append(char)
        at += 1


def _ansi_c(text: bytes, at: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        char = text[at]
        if char == 0x27:  # the closing quote
            return bytes(out), at + 1
        at += 1
        if char != 0x5C:
            out.append(char)
            continue
        kind = text[at]
        at += 1
        if kind in _SIMPLE:
            out.append(_SIMPLE[kind])
        elif kind in _OCTAL:  # up to three octal digits, the first one read already
            end = _digits(text, at, _OCTAL, 2)
            out.append(int(text[at - 1 : end], 8) & 0xFF)
            at = end
        elif kind in b"xuU":  # hex digits: a byte, or a code point
            end = _digits(text, at, _HEX, {ord("x"): 2, ord("u"): 4, ord("U"): 8}[kind])
            number = int(text[at:end] or b"0", 16)
            out += bytes([number]) if kind == ord("x") else chr(number).encode()
            at = end
        elif kind == ord("c"):
            out.append(text[at] & 0x1F)
            at += 1
        else:  # not an escape bash writes: keep it as it is
            out += bytes([0x5C, kind])


def _digits(text: bytes, at: int, allowed: frozenset[int], most: int) -> int:
    """Where a run of at most ``most`` ``allowed`` bytes from ``at`` ends."""
    end = at
    while end < min(at + most, len(text)) and text[end] in allowed:
        end += 1
    return end
