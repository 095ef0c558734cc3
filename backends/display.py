"""A virtual X display (Xvfb) with the programs started on it, driven by xdotool."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal

from backends.jail import JailedProcess
from backends.jail_settings import JailSettings, base_env, default_cwd
from contract.extras import require

#: Debian packages that provide what a display needs (installed by scripts/setup.sh).
REQUIRED = {"Xvfb": "xvfb", "xdotool": "xdotool"}


def missing_tools() -> list[str]:
    """Debian packages to install before a display can start; empty when all are there."""
    return [pkg for tool, pkg in REQUIRED.items() if shutil.which(tool) is None]


class Display:
    """One Xvfb server on a free display number, and the programs started on it.

    Xvfb picks the number itself (``-displayfd``), so concurrent sessions never race for one.
    Xvfb and xdotool are the worker's own tools; every program started on the display (the
    session's ``apps``) runs in a jail of its own that sees only the display's socket.
    Everything is ended by :meth:`close`.
    """

    def __init__(self, width: int, height: int, jail: JailSettings | None = None) -> None:
        self.width = width
        self.height = height
        self.name = ""
        self.jail = jail or JailSettings()
        self._server: asyncio.subprocess.Process | None = None
        self._apps: list[JailedProcess] = []

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

    @property
    def socket(self) -> str:
        return f"/tmp/.X11-unix/X{self.name.lstrip(':')}"

    async def launch(self, argv: list[str]) -> int:
        """Start a program on the display, in its own jail; answers the jail's pid."""
        app = JailedProcess(
            self.jail,
            env={**base_env(self.jail), "DISPLAY": self.name},
            cwd=default_cwd(self.jail),
            fds=("null", "null", "null"),
            sockets=[self.socket] if self.jail.isolated else [],
        )
        await app.start(argv)
        self._apps.append(app)
        assert app.pid is not None
        return app.pid

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
        image = require("PIL.ImageGrab", "the vm backend").grab(xdisplay=self.name)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue()

    async def close(self) -> None:
        """End the programs (each whole jail), then the server (its process group)."""
        for app in self._apps:
            await app.close()
        self._apps.clear()
        proc, self._server = self._server, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def _read_line(fd: int) -> str:
    """Read the display number Xvfb writes when it is ready (blocking; run in a thread)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 32)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()
