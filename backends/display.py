"""A virtual X display (Xvfb) with the programs started on it, driven by xdotool."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal

from PIL import Image, ImageGrab

#: Debian packages that provide what a display needs (installed by scripts/setup.sh).
REQUIRED = {"Xvfb": "xvfb", "xdotool": "xdotool"}


def missing_tools() -> list[str]:
    """Debian packages to install before a display can start; empty when all are there."""
    return [pkg for tool, pkg in REQUIRED.items() if shutil.which(tool) is None]


class Display:
    """One Xvfb server on a free display number, and the programs started on it.

    Xvfb picks the number itself (``-displayfd``), so concurrent sessions never race for one.
    Everything runs in its own process group and is ended by :meth:`close`.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.name = ""
        self._server: asyncio.subprocess.Process | None = None
        self._apps: list[asyncio.subprocess.Process] = []

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server else None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.name}

    async def start(self, timeout: float = 15) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._server = await asyncio.create_subprocess_exec(
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                f"{self.width}x{self.height}x24",
                "-nolisten",
                "tcp",
                pass_fds=(write_fd,),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        try:
            number = await asyncio.wait_for(asyncio.to_thread(_read_line, read_fd), timeout)
        finally:
            os.close(read_fd)
        if not number:
            await self.close()
            raise RuntimeError("Xvfb exited before it opened a display")
        self.name = f":{number}"

    async def launch(self, argv: list[str]) -> int:
        """Start a program on the display; answers its pid."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self._apps.append(proc)
        return proc.pid

    async def xdotool(self, *args: str) -> str:
        """Run one xdotool command on this display; raises with its message when it fails."""
        proc = await asyncio.create_subprocess_exec(
            "xdotool",
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(
                f"xdotool {args[0]} failed: {err.decode().strip() or proc.returncode}"
            )
        return out.decode()

    async def screenshot(self) -> bytes:
        """The whole screen as PNG bytes, read from the X server itself."""
        return await asyncio.to_thread(self._grab_png)

    def _grab_png(self) -> bytes:
        image: Image.Image = ImageGrab.grab(xdisplay=self.name)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue()

    async def close(self) -> None:
        """End the programs, then the server; each whole process group."""
        for proc in [*self._apps, self._server]:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        self._apps.clear()
        self._server = None


def _read_line(fd: int) -> str:
    """Read the display number Xvfb writes when it is ready (blocking; run in a thread)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 32)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()
