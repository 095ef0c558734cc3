"""The vm backend through Sandbox: a real Xvfb display, a real xterm, real keystrokes."""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from client import Sandbox
from contract import ErrorCode


async def _screen(sandbox: Sandbox) -> Image.Image:
    shot = await sandbox.execute("vm:screenshot")
    assert shot["code"] == 0, shot
    png = base64.b64decode(shot["data"]["png_base64"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(png)).convert("RGB")


async def _until_drawn(sandbox: Sandbox) -> Image.Image:
    """Wait for the xterm to map its window: the screen is no longer one colour."""
    for _ in range(100):
        screen = await _screen(sandbox)
        if len(screen.getcolors(1 << 16) or []) > 1:
            return screen
        await asyncio.sleep(0.1)
    raise AssertionError("the xterm never appeared on the screen")


async def test_typing_into_a_real_xterm_shows_on_screen_and_in_its_output(
    sandbox: Sandbox,
) -> None:
    xterms = set(_pids("xterm"))
    created = await sandbox.create_session(
        "vm",
        {
            "screen_size": "800x600",
            "apps": [["xterm", "-geometry", "70x12+0+0", "-e", "sh", "-c", "cat > /tmp/typed.txt"]],
        },
    )
    assert created["status"] == "success", created
    before = await _until_drawn(sandbox)
    # The xterm runs in a sandbox with its own /tmp: read the file through the xterm's root.
    (xterm,) = set(_pids("xterm")) - xterms
    out = Path(f"/proc/{xterm}/root/tmp/typed.txt")
    assert before.size == (800, 600)

    assert (await sandbox.execute("vm:click", {"x": 40, "y": 40}))["code"] == 0
    typed = await sandbox.execute("vm:type", {"text": "hello from an agent"})
    assert typed["code"] == 0 and typed["data"] == {"typed": 19}
    assert (await sandbox.execute("vm:hotkey", {"keys": "Return"}))["code"] == 0

    for _ in range(50):  # the program's own output shows the text
        if out.exists() and out.read_text() == "hello from an agent\n":
            break
        await asyncio.sleep(0.1)
    assert out.read_text() == "hello from an agent\n"
    after = await _screen(sandbox)
    changed = ImageChops.difference(before, after).getbbox()
    assert changed is not None, "the typed text must change the screen's pixels"

    steps: list[tuple[str, dict[str, Any]]] = [
        ("vm:move", {"x": 10, "y": 10}),
        ("vm:double_click", {"x": 20, "y": 20}),
        ("vm:scroll", {"direction": "down", "amount": 2}),
        ("vm:hotkey", {"keys": ["ctrl", "d"]}),
    ]
    for action, params in steps:
        result = await sandbox.execute(action, params)
        assert result["code"] == 0, (action, result)


async def test_bad_desktop_requests_are_refused_clearly(sandbox: Sandbox) -> None:
    await sandbox.create_session("vm", {"screen_size": "320x240"})
    off = await sandbox.execute("vm:click", {"x": 500, "y": 10})
    assert off["code"] == ErrorCode.INVALID_INPUT and "off the 320x240 screen" in off["message"]
    assert (await sandbox.execute("vm:type", {"text": ""}))["code"] == ErrorCode.WRONG_TYPE
    assert (await sandbox.execute("vm:scroll", {"direction": "sideways"}))["code"] in (
        ErrorCode.WRONG_TYPE,
        ErrorCode.INVALID_INPUT,
    )
    bad = await sandbox.reinitialize("vm", {"screen_size": "huge"})
    assert bad["code"] == ErrorCode.INITIALIZE_FAILED and "1024x768" in bad["message"]
    assert (await _screen(sandbox)).size == (320, 240)  # the old desktop was kept


async def test_destroy_ends_the_display_and_its_programs(sandbox: Sandbox) -> None:
    before = set(_pids("Xvfb")) | set(_pids("xterm"))
    await sandbox.create_session("vm", {"apps": [["xterm"]]})
    ours = await _settled(lambda: (set(_pids("Xvfb")) | set(_pids("xterm"))) - before)
    assert len(ours) == 2, "one Xvfb and one xterm for this session"
    await sandbox.destroy_session("vm")
    for _ in range(50):
        if not ours & set(_pids("Xvfb") + _pids("xterm")):
            break
        await asyncio.sleep(0.1)
    assert not ours & set(_pids("Xvfb") + _pids("xterm")), "cleanup must end them all"


async def _settled(read: Callable[[], set[int]]) -> set[int]:
    """The pids once two readings 0.2 s apart agree: xterm forks the child that becomes its
    shell, and until that child execs it is named xterm too."""
    last = read()
    for _ in range(25):
        await asyncio.sleep(0.2)
        now = read()
        if now == last:
            return now
        last = now
    return last


def _pids(name: str) -> list[int]:
    """Live (not zombie) processes with this command name."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().split()
                if fields[1] == f"({name})" and fields[2] != "Z":
                    pids.append(int(entry))
            except OSError:
                continue
    return pids
