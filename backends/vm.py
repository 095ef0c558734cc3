"""The ``vm`` backend: a real virtual X desktop per session, driven by xdotool."""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field

from backends.base import Backend, tool
from backends.display import Display, missing_tools
from backends.jail_settings import settings_from
from contract import ErrorCode, ToolOutcome
from contract.extras import require

DEFAULT_SCREEN = "1024x768"
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
Coordinate = Annotated[int, Field(ge=0, le=20000)]
_BUTTONS = {"left": "1", "middle": "2", "right": "3"}
_SCROLL = {"up": "4", "down": "5", "left": "6", "right": "7"}
#: Names xdotool itself maps to keysyms (case does not matter to it).
_XDOTOOL_ALIASES = frozenset({"alt", "ctrl", "control", "meta", "super", "shift"})


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


def unknown_keys(names: list[str]) -> list[str]:
    """The names among ``names`` that X has no keysym for (xdotool would skip them silently)."""
    lookup = _keysym_lookup()
    unknown = []
    for name in names:
        if name.lower() in _XDOTOOL_ALIASES:
            continue
        if lookup is not None and lookup(name.encode()) == 0:
            unknown.append(name)
    return unknown


def parse_screen_size(value: Any) -> tuple[int, int]:
    """``"1280x800"`` or ``[1280, 800]`` -> ``(1280, 800)``; a clear error otherwise."""
    if isinstance(value, list | tuple) and len(value) == 2:
        width, height = int(value[0]), int(value[1])
    else:
        match = _SIZE.match(str(value))
        if match is None:
            raise ValueError(f"screen_size {value!r} must look like '1024x768'")
        width, height = int(match[1]), int(match[2])
    if not (64 <= width <= 7680 and 64 <= height <= 4320):
        raise ValueError(f"screen_size {width}x{height} is outside 64x64..7680x4320")
    return width, height


class VmBackend(Backend):
    """A virtual X display (Xvfb) per session, with the programs named in config.

    Config: ``screen_size`` (``"1024x768"``), ``apps`` (argv lists started on the display, e.g.
    ``[["xterm"]]``, each in its own jail: the jail keys of :mod:`backends.jail_settings` apply).
    With no window manager, keyboard input goes to the window under the pointer.
    A desktop cannot move between machines: after a lost worker the new instance starts afresh.
    """

    name = "vm"

    async def warmup(self) -> None:
        require("PIL.ImageGrab", "the vm backend")  # its screenshots: Pillow, the [vm] extra
        missing = missing_tools()
        if missing:
            raise RuntimeError(
                f"the vm backend needs the Debian packages {', '.join(missing)} "
                "(scripts/setup.sh installs them)"
            )

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        width, height = parse_screen_size(config.get("screen_size", DEFAULT_SCREEN))
        apps = config.get("apps", [])
        if not isinstance(apps, list) or not all(
            isinstance(a, list) and a and all(isinstance(p, str) for p in a) for a in apps
        ):
            raise ValueError("apps must be a list of argv lists, e.g. [['xterm']]")
        display = Display(width, height, settings_from(config))
        await display.start()
        try:
            pids = [await display.launch(argv) for argv in apps]
        except Exception:
            await display.close()
            raise
        return {"display": display, "app_pids": pids, "config": config}

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        await session_info["display"].close()

    def describe(self, session_info: dict[str, Any]) -> dict[str, Any]:
        display: Display = session_info["display"]
        return {
            "display": display.name,
            "screen_size": f"{display.width}x{display.height}",
            "xvfb_pid": display.pid,
            "app_pids": session_info["app_pids"],
        }

    @tool("vm:screenshot", idempotent=True)
    async def screenshot(
        self, accessibility_tree: bool = False, *, session_info: dict[str, Any]
    ) -> dict[str, Any]:
        """The whole screen as a base64 PNG: png_base64, width, height, bytes; and AgentFlow's
        image (the same PNG), size ([width, height]) and accessibility_tree (null, asked for
        or not: the display runs no accessibility stack)."""
        display: Display = session_info["display"]
        png = await display.screenshot()
        image = base64.b64encode(png).decode()
        return {
            "png_base64": image,
            "width": display.width,
            "height": display.height,
            "bytes": len(png),
            "image": image,
            "size": [display.width, display.height],
            "accessibility_tree": None,
        }

    @tool("vm:move")
    async def move(
        self, x: Coordinate, y: Coordinate, *, session_info: dict[str, Any]
    ) -> dict[str, Any] | ToolOutcome:
        """Move the pointer to (x, y)."""
        return await _pointer(session_info, x, y)

    @tool("vm:click")
    async def click(
        self,
        x: Coordinate,
        y: Coordinate,
        button: Literal["left", "middle", "right"] = "left",
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Click a mouse button at (x, y)."""
        return await _pointer(session_info, x, y, "click", _BUTTONS[button])

    @tool("vm:double_click")
    async def double_click(
        self, x: Coordinate, y: Coordinate, *, session_info: dict[str, Any]
    ) -> dict[str, Any] | ToolOutcome:
        """Double-click the left button at (x, y)."""
        return await _pointer(session_info, x, y, "click", "--repeat", "2", "1")

    @tool("vm:scroll")
    async def scroll(
        self,
        direction: Literal["up", "down", "left", "right"] = "down",
        amount: Annotated[int, Field(ge=1, le=100)] = 3,
        x: Coordinate | None = None,
        y: Coordinate | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Scroll ``amount`` wheel steps, at (x, y) when given."""
        wheel = ("click", "--repeat", str(amount), _SCROLL[direction])
        if x is None or y is None:
            display: Display = session_info["display"]
            await display.xdotool(*wheel)
            return {"scrolled": direction, "amount": amount}
        return await _pointer(session_info, x, y, *wheel)

    @tool("vm:type")
    async def type_text(
        self,
        text: Annotated[str, Field(min_length=1, max_length=10000)],
        delay_ms: Annotated[int, Field(ge=0, le=1000)] = 12,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Type text with the keyboard into the window under the pointer."""
        display: Display = session_info["display"]
        await display.xdotool("type", "--delay", str(delay_ms), "--", text)
        return {"typed": len(text)}

    @tool("vm:hotkey")
    async def hotkey(
        self, keys: str | list[str], *, session_info: dict[str, Any]
    ) -> dict[str, Any] | ToolOutcome:
        """Press a key combination: ``"ctrl+c"``, ``["ctrl", "c"]`` or ``"Return"``."""
        combo = keys if isinstance(keys, str) else "+".join(keys)
        if not combo or not re.fullmatch(r"[A-Za-z0-9_+]+", combo) or "" in combo.split("+"):
            return ToolOutcome(
                code=ErrorCode.INVALID_INPUT,
                message=f"keys {keys!r} must be X key names joined by '+', e.g. 'ctrl+c'",
            )
        unknown = unknown_keys(combo.split("+"))
        if unknown:
            return ToolOutcome(
                code=ErrorCode.INVALID_INPUT,
                message=(
                    f"unknown key name{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(map(repr, unknown))}: use X keysym names such as 'Return', "
                    "'Escape', 'ctrl', 'a'"
                ),
            )
        display: Display = session_info["display"]
        try:
            await display.xdotool("key", "--", combo)
        except RuntimeError as exc:
            return ToolOutcome(code=ErrorCode.INVALID_INPUT, message=str(exc))
        return {"pressed": combo}


async def _pointer(
    session_info: dict[str, Any], x: int, y: int, *then: str
) -> dict[str, Any] | ToolOutcome:
    """Move to (x, y), then run ``then`` (a click or wheel) there, in one xdotool command."""
    display: Display = session_info["display"]
    if x >= display.width or y >= display.height:
        return ToolOutcome(
            code=ErrorCode.INVALID_INPUT,
            message=f"({x}, {y}) is off the {display.width}x{display.height} screen",
        )
    await display.xdotool("mousemove", "--sync", str(x), str(y), *then)
    return {"x": x, "y": y}
