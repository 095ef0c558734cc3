"""AgentFlow's desktop actions on the vm backend, on a real Xvfb display with a real xterm.

Each action is checked twice: the screen's pixels change where expected, and the X input reaches
a program (a bash in the xterm runs what the keys typed, and writes files read back here).
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from client import Sandbox
from contract import ErrorCode

#: 80x24 cells of xterm's default 6x13 font, at the top left; row 0 lies at y 2..15.
XTERM = ["xterm", "-geometry", "80x24+0+0", "-e", "bash", "--norc", "--noprofile"]
ROW0_Y = 8
FAR_X = 150  # column ~24: inside a 40-character line
INSIDE = (240, 200)  # a point inside the xterm, below the lines the tests use


async def _screen(sandbox: Sandbox) -> Image.Image:
    shot = await sandbox.execute("vm:screenshot")
    assert shot["code"] == 0, shot
    return Image.open(io.BytesIO(base64.b64decode(shot["data"]["png_base64"]))).convert("RGB")


async def _ok(sandbox: Sandbox, action: str, params: dict[str, Any]) -> dict[str, Any]:
    result = await sandbox.execute(action, params)
    assert result["code"] == 0, (action, params, result)
    data: dict[str, Any] = result["data"]
    return data


def _xterm_root(title: str) -> Path:
    """The root directory the xterm titled ``title`` sees (its jail's), through /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry}/comm").read_text().strip()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if name == "xterm" and title.encode() in argv:
            return Path(f"/proc/{entry}/root")
    raise AssertionError(f"no xterm titled {title}")


async def _file(root: Path, name: str, timeout: float = 10) -> str:
    """The text of /workspace/<name> once the shell in the xterm has written it."""
    path = root / "workspace" / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        await asyncio.sleep(0.05)
    raise AssertionError(f"the shell never wrote {name}")


@pytest.fixture
async def desk(sandbox: Sandbox) -> tuple[Sandbox, Path]:
    """A 640x400 desktop with a bash in an xterm, ready for keys; and the xterm's root."""
    title = f"desk-{uuid.uuid4().hex}"  # finds this session's xterm among others
    xterm = [*XTERM[:1], "-title", title, *XTERM[1:]]
    created = await sandbox.create_session("vm", {"screen_size": "640x400", "apps": [xterm]})
    assert created["status"] == "success", created
    for _ in range(100):  # until the xterm has mapped its window and its shell runs
        try:
            root = _xterm_root(title)
        except AssertionError:
            root = None
        if root is not None and len((await _screen(sandbox)).getcolors(1 << 16) or []) > 1:
            break
        await asyncio.sleep(0.1)
    assert root is not None
    await _ok(sandbox, "vm:move", {"x": INSIDE[0], "y": INSIDE[1]})  # keys go under the pointer
    await _run(sandbox, root, "echo up > /workspace/up")
    return sandbox, root


async def _run(sandbox: Sandbox, root: Path, command: str) -> None:
    """Type a command into the xterm's bash with AgentFlow's ``enter``; wait for it to end."""
    marker = f"done{time.monotonic_ns()}"
    await _ok(sandbox, "vm:type", {"text": f"{command}; touch /workspace/{marker}"})
    await _ok(sandbox, "vm:key", {"key": "enter"})
    path = root / "workspace" / marker
    for _ in range(200):
        if path.exists():
            await asyncio.sleep(0.3)  # xterm draws what the shell printed
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the shell never ran {command!r}")


async def test_key_chords_held_keys_and_typing_reach_the_shell(desk: tuple[Sandbox, Path]) -> None:
    sandbox, root = desk
    before = await _screen(sandbox)

    # A chord: ctrl+a moves readline to the start of the line, where the missing "e" goes.
    await _ok(sandbox, "vm:type", {"text": "cho chord > /workspace/chord"})
    assert await _ok(sandbox, "vm:key", {"key": "ctrl+a"}) == {"pressed": "ctrl+a", "key": "ctrl+a"}
    assert await _ok(sandbox, "vm:key", {"key": "e"}) == {"pressed": "e", "key": "e"}
    assert (await _ok(sandbox, "vm:key", {"key": ["Return"]}))["pressed"] == "Return"
    assert await _file(root, "chord") == "chord\n"

    # A held shift makes typed letters capitals, until it is released.
    await _ok(sandbox, "vm:type", {"text": "echo "})
    assert await _ok(sandbox, "vm:key_down", {"key": "shift"}) == {"held": "shift", "key": "shift"}
    await _ok(sandbox, "vm:type", {"text": "abc"})
    assert await _ok(sandbox, "vm:key_up", {"key": "shift"}) == {
        "released": "shift",
        "key": "shift",
    }
    await _ok(sandbox, "vm:type", {"text": "def > /workspace/shift"})
    await _ok(sandbox, "vm:key", {"key": "Return"})
    assert await _file(root, "shift") == "ABCdef\n"

    # AgentFlow's interval is seconds between keys: 25 keys at 0.04 s take a second.
    text = "echo slowly > /workspace/s"
    started = time.monotonic()
    assert await _ok(sandbox, "vm:type", {"text": text, "interval": 0.04}) == {"typed": len(text)}
    assert time.monotonic() - started >= 0.9
    await _ok(sandbox, "vm:hotkey", {"keys": ["enter"]})  # AgentFlow's names work here too
    assert await _file(root, "s") == "slowly\n"

    after = await _screen(sandbox)
    changed = ImageChops.difference(before, after).getbbox()
    assert changed is not None, "what the keys typed must show on the screen"
    assert changed[2] <= 6 * 80 + 4 and changed[3] <= 13 * 24 + 4, "only inside the xterm"


async def _selection_pasted(
    sandbox: Sandbox, root: Path, letter: str, select: Callable[[], Awaitable[None]]
) -> tuple[str, tuple[int, int, int, int] | None]:
    """Print a line of ``letter`` on the xterm's top row, ``select`` part of it with the mouse,
    paste the selection (middle button) into a command that writes it to a file. Answers the
    file's text and where the selecting changed the screen."""
    await _run(sandbox, root, f"clear; echo {letter * 40}")
    before = await _screen(sandbox)
    await select()
    await asyncio.sleep(0.3)
    changed = ImageChops.difference(before, await _screen(sandbox)).getbbox()
    await _ok(sandbox, "vm:type", {"text": "echo "})
    await _ok(sandbox, "vm:click", {"x": INSIDE[0], "y": INSIDE[1], "button": "middle"})
    await _ok(sandbox, "vm:type", {"text": f" > /workspace/{letter}"})
    await _ok(sandbox, "vm:key", {"key": "Return"})
    return await _file(root, letter), changed


def _assert_selected(text: str, letter: str, changed: Any) -> None:
    assert text.strip() == letter * len(text.strip()) and len(text.strip()) >= 15, text
    assert changed is not None, "the selection must show (xterm draws it in reverse video)"
    assert changed[1] < 16 and changed[3] <= 16, f"only the top row changes: {changed}"


async def test_a_drag_selects_text_in_the_xterm(desk: tuple[Sandbox, Path]) -> None:
    sandbox, root = desk

    async def drag() -> None:
        dragged = await _ok(
            sandbox,
            "vm:drag",
            {"start_x": 4, "start_y": ROW0_Y, "end_x": FAR_X, "end_y": ROW0_Y},
        )
        assert dragged["from"] == [4, ROW0_Y] and dragged["to"] == [FAR_X, ROW0_Y]
        assert dragged["start_x"] == 4 and dragged["end_x"] == FAR_X

    text, changed = await _selection_pasted(sandbox, root, "W", drag)
    _assert_selected(text, "W", changed)


async def test_mouse_down_move_mouse_up_select_text(desk: tuple[Sandbox, Path]) -> None:
    sandbox, root = desk

    async def press_move_release() -> None:
        down = await _ok(sandbox, "vm:mouse_down", {"x": 4, "y": ROW0_Y})
        assert down == {"x": 4, "y": ROW0_Y, "button": "left"}
        await _ok(sandbox, "vm:move", {"x": FAR_X // 2, "y": ROW0_Y})
        await _ok(sandbox, "vm:move", {"x": FAR_X, "y": ROW0_Y})
        up = await _ok(sandbox, "vm:mouse_up", {"button": "left"})  # AgentFlow's form
        assert up == {"x": FAR_X, "y": ROW0_Y, "button": "left"}

    text, changed = await _selection_pasted(sandbox, root, "X", press_move_release)
    _assert_selected(text, "X", changed)


async def test_a_right_click_extends_the_selection(desk: tuple[Sandbox, Path]) -> None:
    sandbox, root = desk

    async def click_then_right_click() -> None:
        await _ok(sandbox, "vm:click", {"x": 4, "y": ROW0_Y})  # xterm: the selection's start
        right = await _ok(sandbox, "vm:right_click", {"x": FAR_X, "y": ROW0_Y})  # ...its end
        assert right == {"x": FAR_X, "y": ROW0_Y, "button": "right", "clicked": [FAR_X, ROW0_Y]}

    text, changed = await _selection_pasted(sandbox, root, "Y", click_then_right_click)
    _assert_selected(text, "Y", changed)
    # Without coordinates: where the pointer is (the middle click that pasted left it there).
    here = {"x": INSIDE[0], "y": INSIDE[1], "button": "right", "clicked": list(INSIDE)}
    assert await _ok(sandbox, "vm:right_click", {}) == here


async def test_scroll_clicks_move_the_xterm_through_its_history(
    desk: tuple[Sandbox, Path],
) -> None:
    sandbox, root = desk
    await _run(sandbox, root, "seq 1 200")
    bottom = await _screen(sandbox)
    up = await _ok(sandbox, "vm:scroll", {"x": INSIDE[0], "y": INSIDE[1], "clicks": 5})
    assert up == {
        **{"x": INSIDE[0], "y": INSIDE[1], "scrolled": "up", "amount": 5},
        **{"clicks": 5, "position": list(INSIDE)},  # AgentFlow's fields
    }
    await asyncio.sleep(0.3)
    scrolled = await _screen(sandbox)
    assert ImageChops.difference(bottom, scrolled).getbbox() is not None, "the history shows"
    down = await _ok(sandbox, "vm:scroll", {"x": INSIDE[0], "y": INSIDE[1], "clicks": -5})
    assert down["scrolled"] == "down" and down["amount"] == 5
    await asyncio.sleep(0.3)
    assert ImageChops.difference(bottom, await _screen(sandbox)).getbbox() is None, "back down"
    # Our own form still works.
    assert (await _ok(sandbox, "vm:scroll", {"direction": "up", "amount": 2}))["amount"] == 2
    # Where the pointer already is, xdotool's mousemove --sync would wait 15 s for a move.
    started = time.monotonic()
    for action in ("vm:click", "vm:move", "vm:right_click", "vm:mouse_down", "vm:mouse_up"):
        await _ok(sandbox, action, {"x": INSIDE[0], "y": INSIDE[1]})
    assert time.monotonic() - started < 5


async def test_bad_desktop_actions_are_refused_clearly(sandbox: Sandbox) -> None:
    assert (await sandbox.create_session("vm", {"screen_size": "320x240"}))["status"] == "success"
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("vm:key", {"key": "ctrl+nosuchkey"}, "'nosuchkey'"),
        ("vm:key", {"key": "ctrl+"}, "key names"),
        ("vm:key_down", {"key": "--help"}, "'--help'"),
        ("vm:right_click", {"x": 10}, "x and y together"),
        ("vm:mouse_down", {"x": 400, "y": 10}, "off the 320x240 screen"),
        ("vm:drag", {"start_x": 0, "start_y": 0, "end_x": 10, "end_y": 999}, "off the 320x240"),
    ]
    for action, params, words in refused:
        answer = await sandbox.execute(action, params)
        assert answer["code"] == ErrorCode.INVALID_INPUT and words in answer["message"], (
            action,
            answer,
        )
    wrong: list[tuple[str, dict[str, Any]]] = [
        ("vm:mouse_up", {"button": "fourth"}),
        ("vm:scroll", {"clicks": 1000}),
        ("vm:type", {"text": "a", "interval": 5}),
    ]
    for action, params in wrong:
        assert (await sandbox.execute(action, params))["code"] in (
            ErrorCode.WRONG_TYPE,
            ErrorCode.INVALID_INPUT,
        ), action
    # AgentFlow's key names and punctuation become X names.
    for key, x_name in [
        ("esc", "Escape"),
        ("pageup", "Prior"),
        ("F5", "F5"),
        ("ctrl++", "ctrl+plus"),
    ]:
        assert await _ok(sandbox, "vm:key", {"key": key}) == {"pressed": x_name, "key": key}
    # AgentFlow's wait, done and fail.
    started = time.monotonic()
    waited = await _ok(sandbox, "vm:wait", {"seconds": 0.3})
    assert waited == {"waited": 0.3, "accessibility_tree": None}
    assert time.monotonic() - started >= 0.3
    negative = await sandbox.execute("vm:wait", {"seconds": -1})
    assert negative["code"] == ErrorCode.WRONG_TYPE and "seconds" in negative["message"]
    assert await _ok(sandbox, "vm:done", {}) == {"done": True}
    assert await _ok(sandbox, "vm:fail", {"reason": "no such menu"}) == {
        "fail": True,
        "reason": "no such menu",
    }
    assert await _ok(sandbox, "vm:scroll", {"clicks": 0}) == {
        "scrolled": "down",
        "amount": 0,
        "clicks": 0,
    }
