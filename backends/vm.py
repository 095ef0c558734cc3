"""The ``vm`` backend: a real virtual X desktop per session, driven by xdotool."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Annotated, Any, Literal

from pydantic import Field

from backends.base import Backend, tool
from backends.display import Display, missing_tools
from backends.jail_settings import settings_from
from backends.vm_keys import chord
from contract import ErrorCode, ToolOutcome
from contract.extras import require

DEFAULT_SCREEN = "1024x768"
_SIZE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
Coordinate = Annotated[int, Field(ge=0, le=20000)]
Button = Literal["left", "middle", "right"]
_BUTTONS = {"left": "1", "middle": "2", "right": "3"}
_SCROLL = {"up": "4", "down": "5", "left": "6", "right": "7"}
#: Pointer moves of a drag between its ends (programs that track motion see a path).
DRAG_STEPS = 8


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
        clicks: Annotated[int, Field(ge=-100, le=100)] | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Scroll ``amount`` wheel steps, at (x, y) when given. ``clicks`` (AgentFlow's form)
        replaces direction and amount: positive scrolls up, negative down."""
        if clicks is not None:
            direction, amount = ("up" if clicks > 0 else "down"), abs(clicks)
        wheel = ("click", "--repeat", str(amount), _SCROLL[direction]) if amount else ()
        done: dict[str, Any] = {"scrolled": direction, "amount": amount}
        if clicks is not None:  # AgentFlow's answer: clicks, position
            done["clicks"] = clicks
            if x is not None and y is not None:
                done["position"] = [x, y]
        if x is None or y is None:
            display: Display = session_info["display"]
            if wheel:
                await display.xdotool(*wheel)
            return done
        moved = await _pointer(session_info, x, y, *wheel)
        return moved if isinstance(moved, ToolOutcome) else {**moved, **done}

    @tool("vm:type")
    async def type_text(
        self,
        text: Annotated[str, Field(min_length=1, max_length=10000)],
        delay_ms: Annotated[int, Field(ge=0, le=1000)] = 12,
        interval: Annotated[float, Field(ge=0, le=1)] | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Type text with the keyboard into the window under the pointer; ``delay_ms`` between
        keys, or AgentFlow's ``interval`` in seconds (it wins when given)."""
        if interval is not None:
            delay_ms = round(interval * 1000)
        display: Display = session_info["display"]
        # xdotool waits half its --delay after each key: twice the delay is the time between keys
        await display.xdotool("type", "--delay", str(2 * delay_ms), "--", text)
        return {"typed": len(text)}

    @tool("vm:hotkey")
    async def hotkey(
        self, keys: str | list[str], *, session_info: dict[str, Any]
    ) -> dict[str, Any] | ToolOutcome:
        """Press a key combination: ``"ctrl+c"``, ``["ctrl", "c"]`` or ``"Return"``."""
        return await _keys(session_info, "key", keys, "pressed")

    @tool("vm:key")
    async def key(
        self, key: str | list[str], *, session_info: dict[str, Any]
    ) -> dict[str, Any] | ToolOutcome:
        """Press and release a key or chord: ``"Return"``, ``"enter"``, ``"ctrl+a"``, ``["ctrl",
        "a"]`` (X keysym names, xdotool's ``ctrl``/``alt``/``shift``/``super``, AgentFlow's
        ``enter``/``esc``/``backspace``/``pageup``...)."""
        return await _keys(session_info, "key", key, "pressed")

    @tool("vm:key_down")
    async def key_down(
        self, key: str | list[str], *, session_info: dict[str, Any]
    ) -> dict[str, Any] | ToolOutcome:
        """Press a key (or chord) and hold it until ``vm:key_up``: later keys, typing and clicks
        get it as a modifier."""
        return await _keys(session_info, "keydown", key, "held")

    @tool("vm:key_up")
    async def key_up(
        self, key: str | list[str], *, session_info: dict[str, Any]
    ) -> dict[str, Any] | ToolOutcome:
        """Release a key (or chord) held by ``vm:key_down``."""
        return await _keys(session_info, "keyup", key, "released")

    @tool("vm:right_click")
    async def right_click(
        self,
        x: Coordinate | None = None,
        y: Coordinate | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Click the right button at (x, y), or where the pointer is when neither is given."""
        done = await _button(session_info, x, y, "click", "right")
        if isinstance(done, ToolOutcome):
            return done
        return {**done, "clicked": [done["x"], done["y"]]}  # AgentFlow's answer: clicked

    @tool("vm:mouse_down")
    async def mouse_down(
        self,
        button: Button = "left",
        x: Coordinate | None = None,
        y: Coordinate | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Press a mouse button and hold it until ``vm:mouse_up``: where the pointer is, or at
        (x, y) when given."""
        return await _button(session_info, x, y, "mousedown", button)

    @tool("vm:mouse_up")
    async def mouse_up(
        self,
        button: Button = "left",
        x: Coordinate | None = None,
        y: Coordinate | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Release a mouse button: where the pointer is, or at (x, y) when given (the pointer
        moves there first, with the button still down)."""
        return await _button(session_info, x, y, "mouseup", button)

    @tool("vm:drag")
    async def drag(
        self,
        start_x: Coordinate,
        start_y: Coordinate,
        end_x: Coordinate,
        end_y: Coordinate,
        button: Button = "left",
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any] | ToolOutcome:
        """Press a button at (start_x, start_y), move to (end_x, end_y) in steps, release."""
        display: Display = session_info["display"]
        for x, y in ((start_x, start_y), (end_x, end_y)):
            off = _off_screen(display, x, y)
            if off is not None:
                return off
        steps = [
            (
                start_x + (end_x - start_x) * i // DRAG_STEPS,
                start_y + (end_y - start_y) * i // DRAG_STEPS,
            )
            for i in range(1, DRAG_STEPS + 1)
        ]
        here = await _location(display)
        press = [*_path(here, [(start_x, start_y)]), "mousedown", _BUTTONS[button]]
        moves = _path((start_x, start_y), steps)
        await display.xdotool(*press, *moves, "mouseup", _BUTTONS[button])
        ends = {"start_x": start_x, "start_y": start_y, "end_x": end_x, "end_y": end_y}
        return {**ends, "from": [start_x, start_y], "to": [end_x, end_y]}  # AgentFlow's: from, to

    @tool("vm:wait")
    async def wait(
        self,
        seconds: Annotated[float, Field(ge=0, le=600)] = 1.0,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Wait ``seconds`` (AgentFlow's: for the screen to settle); answers waited and
        accessibility_tree (null here, as on vm:screenshot)."""
        await asyncio.sleep(seconds)
        return {"waited": seconds, "accessibility_tree": None}

    @tool("vm:done")
    async def done(self, *, session_info: dict[str, Any]) -> dict[str, Any]:
        """Mark the task done (AgentFlow's episode end, recorded in the session's event log as
        every call is; nothing on the desktop changes)."""
        return {"done": True}

    @tool("vm:fail")
    async def fail(
        self,
        reason: Annotated[str, Field(max_length=2000)] | None = None,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Mark the task failed (AgentFlow's FAIL, for an infeasible task), with a reason;
        recorded as vm:done is."""
        return {"fail": True, **({"reason": reason} if reason else {})}


async def _keys(
    session_info: dict[str, Any], command: str, keys: str | list[str], done: str
) -> dict[str, Any] | ToolOutcome:
    """Run xdotool's ``key``, ``keydown`` or ``keyup`` with one key or chord."""
    try:
        combo = chord(keys)
    except ValueError as exc:
        return ToolOutcome(code=ErrorCode.INVALID_INPUT, message=str(exc))
    display: Display = session_info["display"]
    try:
        await display.xdotool(command, "--", combo)
    except RuntimeError as exc:
        return ToolOutcome(code=ErrorCode.INVALID_INPUT, message=str(exc))
    return {done: combo, "key": keys}


async def _button(
    session_info: dict[str, Any], x: int | None, y: int | None, command: str, button: str
) -> dict[str, Any] | ToolOutcome:
    """Run ``click``, ``mousedown`` or ``mouseup`` at (x, y), or where the pointer is;
    answers the point and the button."""
    display: Display = session_info["display"]
    if (x is None) != (y is None):
        return ToolOutcome(
            code=ErrorCode.INVALID_INPUT, message="give x and y together, or neither"
        )
    here = await _location(display)
    if x is not None and y is not None:
        off = _off_screen(display, x, y)
        if off is not None:
            return off
        there = (x, y)
    else:
        there = here
    await display.xdotool(*_path(here, [there]), command, _BUTTONS[button])
    return {"x": there[0], "y": there[1], "button": button}


async def _location(display: Display) -> tuple[int, int]:
    """Where the pointer is."""
    out = await display.xdotool("getmouselocation", "--shell")
    where = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return int(where["X"]), int(where["Y"])


def _path(here: tuple[int, int], points: list[tuple[int, int]]) -> list[str]:
    """xdotool's arguments that move the pointer from ``here`` through ``points``, each move
    waited for; a point where the pointer already is gets none (there xdotool's ``--sync`` would
    wait 15 s for a move that never comes)."""
    args: list[str] = []
    for point in points:
        if point != here:
            args += ["mousemove", "--sync", str(point[0]), str(point[1])]
            here = point
    return args


def _off_screen(display: Display, x: int, y: int) -> ToolOutcome | None:
    if x >= display.width or y >= display.height:
        return ToolOutcome(
            code=ErrorCode.INVALID_INPUT,
            message=f"({x}, {y}) is off the {display.width}x{display.height} screen",
        )
    return None


async def _pointer(
    session_info: dict[str, Any], x: int, y: int, *then: str
) -> dict[str, Any] | ToolOutcome:
    """Move to (x, y), then run ``then`` (a click or wheel) there, in one xdotool command."""
    display: Display = session_info["display"]
    off = _off_screen(display, x, y)
    if off is not None:
        return off
    moves = _path(await _location(display), [(x, y)])
    if moves or then:
        await display.xdotool(*moves, *then)
    return {"x": x, "y": y}
