"""Key names for the vm backend: X keysym names, xdotool's and AgentFlow's (pyautogui's) names.

A key or chord arrives as ``"Return"``, ``"enter"``, ``"ctrl+a"``, ``"ctrl++"`` or
``["ctrl", "a"]``; :func:`chord` answers the ``+``-joined X names xdotool is given, or raises
:class:`ValueError` with a message for the caller (a name xdotool would otherwise skip silently).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from functools import lru_cache
from typing import Any

#: Names xdotool itself maps to keysyms (case does not matter to it).
XDOTOOL_ALIASES = frozenset({"alt", "ctrl", "control", "meta", "super", "shift"})
#: AgentFlow's key names (pyautogui's), lower case, and the X keysym each stands for.
AGENTFLOW_NAMES = {
    "enter": "Return",
    "return": "Return",
    "esc": "Escape",
    "escape": "Escape",
    "backspace": "BackSpace",
    "tab": "Tab",
    "space": "space",
    "delete": "Delete",
    "del": "Delete",
    "insert": "Insert",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "home": "Home",
    "end": "End",
    "pageup": "Prior",
    "pgup": "Prior",
    "pagedown": "Next",
    "pgdn": "Next",
    "capslock": "Caps_Lock",
    "numlock": "Num_Lock",
    "scrolllock": "Scroll_Lock",
    "printscreen": "Print",
    "prtsc": "Print",
    "print": "Print",
    "pause": "Pause",
    "menu": "Menu",
    "apps": "Menu",
    "win": "super",
    "winleft": "Super_L",
    "winright": "Super_R",
    "command": "super",
    "cmd": "super",
    "option": "alt",
    "ctrlleft": "Control_L",
    "ctrlright": "Control_R",
    "shiftleft": "Shift_L",
    "shiftright": "Shift_R",
    "altleft": "Alt_L",
    "altright": "Alt_R",
}
#: A key given as the character it types, where X names it otherwise.
PUNCTUATION = {
    "+": "plus",
    "-": "minus",
    "=": "equal",
    ",": "comma",
    ".": "period",
    "/": "slash",
    "\\": "backslash",
    ";": "semicolon",
    "'": "apostrophe",
    "`": "grave",
    "[": "bracketleft",
    "]": "bracketright",
    " ": "space",
    "!": "exclam",
    "@": "at",
    "#": "numbersign",
    "$": "dollar",
    "%": "percent",
    "^": "asciicircum",
    "&": "ampersand",
    "*": "asterisk",
    "(": "parenleft",
    ")": "parenright",
    "_": "underscore",
    "{": "braceleft",
    "}": "braceright",
    "|": "bar",
    ":": "colon",
    '"': "quotedbl",
    "<": "less",
    ">": "greater",
    "?": "question",
    "~": "asciitilde",
}
MAX_KEYS = 16
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_FUNCTION_KEY = re.compile(r"^[fF]([1-9]|1[0-9]|2[0-4])$")


@lru_cache(maxsize=1)
def _keysym_lookup() -> Any:
    """libX11's ``XStringToKeysym`` (no display needed), or None where libX11 is missing."""
    path = ctypes.util.find_library("X11")
    if path is None:
        return None
    lookup = ctypes.CDLL(path).XStringToKeysym
    lookup.argtypes = [ctypes.c_char_p]
    lookup.restype = ctypes.c_ulong
    return lookup


def _known(name: str) -> bool:
    lookup = _keysym_lookup()
    return lookup is None or lookup(name.encode()) != 0


def x_name(name: str) -> str | None:
    """The X name xdotool is given for one key name, or None when X has none for it."""
    if name in PUNCTUATION:
        return PUNCTUATION[name]
    if not _NAME.match(name):
        return None
    if name.lower() in XDOTOOL_ALIASES:
        return name.lower()
    if _known(name):
        return name
    if name.lower() in AGENTFLOW_NAMES:
        return AGENTFLOW_NAMES[name.lower()]
    if _FUNCTION_KEY.match(name):
        return name.upper()
    if _known(name.capitalize()):  # "escape", "HOME" -> "Escape", "Home"
        return name.capitalize()
    return None


def _split(combo: str) -> list[str]:
    """``"ctrl+a"`` -> ``["ctrl", "a"]``; a ``+`` key itself stays one (``"ctrl++"``, ``"+"``)."""
    if combo == "+":
        return ["+"]
    if combo.endswith("++"):
        return [*combo[:-2].split("+"), "+"]
    return combo.split("+")


def chord(keys: str | list[str]) -> str:
    """The xdotool key sequence for one key or chord; ValueError says what is wrong."""
    names = _split(keys) if isinstance(keys, str) else list(keys)
    if not names or len(names) > MAX_KEYS or "" in names:
        raise ValueError(
            f"keys {keys!r} must be 1..{MAX_KEYS} key names, e.g. 'Return', 'ctrl+c' "
            "or ['ctrl', 'c']"
        )
    mapped = [x_name(name) for name in names]
    unknown = [name for name, x in zip(names, mapped, strict=True) if x is None]
    if unknown:
        raise ValueError(
            f"unknown key name{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}: use X keysym names such as 'Return', "
            "'Escape', 'ctrl', 'a' (or AgentFlow's: 'enter', 'esc', 'pageup')"
        )
    return "+".join(x for x in mapped if x is not None)
