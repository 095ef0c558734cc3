"""Each session's processes run in a bubblewrap jail; :class:`JailedProcess` starts and drives one
(its settings and command: :mod:`backends.jail_settings`; its control channel:
:mod:`backends.jail_control`).

A jail is ``bwrap`` with new user, pid, ipc, uts, cgroup and network namespaces (with ``network:
true``, outbound access through a user-mode stack that never reaches the host's loopback:
:mod:`backends.jail_net`), a read-only view of the system (``/usr``, ``/etc`` and the ``/bin``,
``/lib`` links), private size-capped tmpfs mounts for ``/workspace`` (the home and default working
directory), ``/tmp`` and ``/dev/shm``, and nothing else of the host: no ``/home``, ``/root``,
``/var``, ``/run``, no worker files. A worker running as root first drops to uid/gid 65534
(``setpriv``), so the jail holds no root power over host files and ``RLIMIT_NPROC`` holds; an
unprivileged worker's jails run under its own uid (mapped to 65534 inside).

Its first process is :mod:`backends.jail_init` (pid 1 of the namespace), which starts the
session's program with resource limits and a clean environment, restarts it on request after
ending every other process of the jail, and dies with the worker (``--die-with-parent``): a
timeout, a destroy or a lost worker leave nothing running, ``setsid`` daemons included.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from backends import jail_net
from backends.jail_control import ControlChannel
from backends.jail_settings import (
    ARCHIVE,
    FILES,
    HOST_ENV,
    INIT,
    INSIDE_DIR,
    REQUESTS,
    WORKSPACE,
    WRITABLE,
    JailSettings,
    JailUnavailable,
    bwrap_command,
    check_available,
    data_fd,
    jail_python,
    under,
)


class JailedProcess(ControlChannel):
    """One program of a session, run by a supervisor inside its own jail.

    ``fds`` names the program's descriptors in order: ``"in"`` (the worker writes it),
    ``"out"`` (the worker reads it) or ``"null"``. They are plain pipes made here, kept by the
    supervisor across restarts, so a restarted program speaks on the same channels.
    """

    def __init__(
        self,
        settings: JailSettings,
        *,
        env: Mapping[str, str],
        cwd: str,
        fds: Sequence[str],
        files: Sequence[Path] = (),
        sockets: Sequence[str] = (),
        python: str | None = None,
        root: str | None = None,
    ) -> None:
        self.settings = settings
        self.env = dict(env)
        self.cwd = cwd
        self.kinds = list(fds)
        self.files = list(files)
        self.sockets = list(sockets)
        self._python = python
        #: The workspace, where file operations work: /workspace in a jail, else the start cwd.
        self.root = WORKSPACE if settings.isolated else (root or cwd)
        self._control: socket.socket | None = None
        self._calls: dict[int, asyncio.Future[tuple[dict[str, Any], list[int]]]] = {}
        self._ids = itertools.count(1)
        #: Called with every event the supervisor reports on the control channel.
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._ends: dict[int, int] = {}  # program fd -> the worker's end of its pipe
        self._events: asyncio.Task[None] | None = None
        self._errors: asyncio.Task[None] | None = None
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=64)
        self._started = asyncio.Event()
        self._exited = asyncio.Event()
        self._ended = asyncio.Event()
        self._info: int | None = None  # bwrap's --info-fd, read once for the first pid
        self._first_pid: int | None = None
        self._net: jail_net.UserNet | None = None  # the user-mode stack of network: true
        self._failed = False  # the last start could not execute the program
        self.generation = 0
        self.exit_status: int | None = None
        self.error: str | None = None

    @property
    def pid(self) -> int | None:
        """The host pid of the jail (bwrap, or the supervisor with ``isolation: none``)."""
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._ended.is_set()

    def path_of(self, host_file: Path) -> str:
        """Where the program sees one of ``files``."""
        return f"{INSIDE_DIR}/{host_file.name}" if self.settings.isolated else str(host_file)

    def end(self, fd: int) -> int:
        """The worker's end of the program's descriptor ``fd``, now the caller's to close.

        Taken out of the box's own list: closed twice, a descriptor number another jail
        reused in between would be closed under it (a cleanup racing a start)."""
        return self._ends.pop(fd)

    async def writer(self, fd: int) -> asyncio.StreamWriter:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(self._ends.pop(fd), "wb", buffering=0)
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
        return asyncio.StreamWriter(transport, protocol, None, loop)

    async def reader(self, fd: int, limit: int = 1 << 20) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=limit)
        pipe = os.fdopen(self._ends.pop(fd), "rb", buffering=0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        return reader

    async def start(self, argv: Sequence[str], *, timeout: float = 30) -> None:
        """Start the jail and the program in it; raises with the jail's own words."""
        check_available(self.settings)
        control_fd, spec_fds = await self._spawn()
        assert self._proc is not None and self._proc.stdin is not None
        assert self._control is not None
        self._events = asyncio.create_task(self._read_events())
        self._errors = asyncio.create_task(self._read_stderr())
        self._control.setblocking(False)
        asyncio.get_running_loop().add_reader(self._control.fileno(), self._on_control)
        if self.settings.isolated and self.settings.network:
            # Before the spec: the supervisor starts the program only once it has read it.
            await self._attach_network(timeout)
        spec = {
            "argv": list(argv),
            "env": self.env,
            "cwd": self.cwd,
            "make_cwd": self.settings.isolated and under(self.cwd, WRITABLE),
            "fds": spec_fds,
            "limits": self.settings.rlimits(),
            "nice": self.settings.nice,
            "pid_namespace": self.settings.isolated,
            "control_fd": control_fd,
            "root": self.root,
        }
        self._proc.stdin.write(json.dumps(spec).encode() + b"\n")
        try:
            await self._proc.stdin.drain()
            await asyncio.wait_for(self._wait_started(), timeout)
        except (ConnectionError, TimeoutError, JailUnavailable, RuntimeError) as exc:
            message = self.error or self.stderr_text() or str(exc) or type(exc).__name__
            await self.close()
            if self.settings.isolated and "bwrap" in message:
                raise JailUnavailable(f"the sandbox could not start: {message}") from None
            raise RuntimeError(f"the session's program could not start: {message}") from None

    async def _spawn(self) -> tuple[int, list[list[int]]]:
        """Start bwrap (or, with ``isolation: none``, the supervisor itself) with the pipes and
        the control socket; answers the control socket's and the program's descriptor numbers
        as the supervisor sees them (its spec)."""
        inside: list[int] = []  # the jail's ends, inherited by bwrap and kept by the supervisor
        spec_fds: list[list[int]] = []
        data: dict[str, int] = {}
        control, theirs_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = control
        control_fd = theirs_control.detach()
        inside.append(control_fd)
        try:
            for child, kind in enumerate(self.kinds):
                if kind == "null":
                    spec_fds.append([child, -1])
                    continue
                r, w = os.pipe()
                ours, theirs = (w, r) if kind == "in" else (r, w)
                self._ends[child] = ours
                inside.append(theirs)
                spec_fds.append([child, theirs])
            if self.settings.isolated:
                python, binds = jail_python(self._python)
                for host_file in [INIT, REQUESTS, FILES, ARCHIVE, *self.files]:
                    data[self.path_of(host_file)] = data_fd(host_file.read_bytes())
                self._info, info_w = os.pipe()
                inside.append(info_w)
                if self.settings.network and (resolv := jail_net.resolv_conf_path()):
                    data[resolv] = data_fd(jail_net.RESOLV_CONF)
                cmd = bwrap_command(
                    self.settings,
                    python=python,
                    binds=binds,
                    data_files=data,
                    sockets=self.sockets,
                    info_fd=info_w,
                )
            else:
                cmd = [sys.executable, "-I", "-S", str(INIT)]
            self._proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=[*inside, *data.values()],
                env=HOST_ENV,
                cwd="/",
                start_new_session=True,
            )
        except BaseException:
            for fd in [*self._ends.values(), *([self._info] if self._info is not None else [])]:
                os.close(fd)
            self._ends.clear()
            self._info = None
            self._control = None
            control.close()
            raise
        finally:
            for fd in [*inside, *data.values()]:
                os.close(fd)
        return control_fd, spec_fds

    async def _attach_network(self, timeout: float) -> None:
        """Start the jail's user-mode stack once bwrap is done setting the jail up."""
        try:
            assert self._info is not None
            info, self._info = self._info, None
            try:
                self._first_pid = await jail_net.first_pid(info, timeout)
            finally:
                os.close(info)
            # Not earlier: bwrap sets the namespace's loopback up itself, and a stack configuring
            # the namespace meanwhile makes that fail now and then.
            await jail_net.until_exec(self._first_pid, "bwrap", timeout)
            self._net = await jail_net.UserNet.start(self._first_pid, timeout=timeout)
        except (OSError, TimeoutError, jail_net.NetworkUnavailable) as exc:
            message = self.stderr_text() or str(exc) or type(exc).__name__
            await self.close()
            raise JailUnavailable(f"the sandbox's network could not start: {message}") from None

    async def _wait_started(self) -> None:
        waiter = asyncio.ensure_future(self._started.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            ended.cancel()
        if self._failed:
            raise RuntimeError(self.error or "the program could not be executed")
        if not self._started.is_set():
            await asyncio.sleep(0.05)  # let the last words on stderr arrive
            raise JailUnavailable(self.error or self.stderr_text() or "the sandbox exited")

    def stderr_text(self) -> str:
        return b"".join(self._stderr).decode(errors="replace").strip()[-2000:]

    async def _read_events(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while line := await self._proc.stdout.readline():
                word, _, rest = line.decode(errors="replace").strip().partition(" ")
                if word == "started":
                    self._failed = False
                    self._read_info()
                    generation, _, _ = rest.partition(" ")
                    self.generation = int(generation)
                    self.exit_status = None
                    self._exited.clear()
                    self._started.set()
                elif word == "exited":
                    generation, _, status = rest.partition(" ")
                    if int(generation) == self.generation:
                        self.exit_status = int(status)
                        self._exited.set()
                elif word == "failed":
                    _, _, self.error = rest.partition(" ")
                    self._started.set()  # wakes the waiter, which finds no program
                    self._failed = True
                elif word == "error":
                    self.error = rest
        finally:
            self._ended.set()

    def _read_info(self) -> None:
        """The host pid of the jail's first process, from bwrap's info (written by now)."""
        if self._info is None:
            return
        fd, self._info = self._info, None
        try:
            os.set_blocking(fd, False)
            with contextlib.suppress(BlockingIOError, ValueError, KeyError, TypeError):
                self._first_pid = int(json.loads(os.read(fd, 65536))["child-pid"])
        finally:
            os.close(fd)

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while chunk := await self._proc.stderr.read(4096):
            self._stderr.append(chunk)

    async def wait_exit(self) -> int | None:
        """Until the program exits (its status) or the whole jail ends (None)."""
        waiters = {
            asyncio.ensure_future(self._exited.wait()),
            asyncio.ensure_future(self._ended.wait()),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        return self.exit_status if self._exited.is_set() else None

    async def _command(self, line: str) -> None:
        if self._proc is None or self._proc.stdin is None or self._ended.is_set():
            raise ConnectionError("the sandbox has ended")
        self._proc.stdin.write(line.encode() + b"\n")
        await self._proc.stdin.drain()

    async def restart(self, timeout: float = 30) -> None:
        """End every process in the jail, then start the program afresh (files stay)."""
        self._started.clear()
        await self._command("restart")
        await asyncio.wait_for(self._wait_started(), timeout)

    async def signal(self, sig: int) -> None:
        """Send a signal to the program itself (not to what it started)."""
        with contextlib.suppress(ConnectionError):
            await self._command(f"signal {int(sig)}")

    async def close(self) -> None:
        """End the jail and everything in it; release the pipes."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            if not self.settings.isolated and proc.stdin is not None:
                # Outside a pid namespace the supervisor ends the program's process group.
                with contextlib.suppress(ConnectionError, RuntimeError):
                    proc.stdin.write(b"stop\n")
                    await proc.stdin.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 2)
            # bwrap's end sends SIGKILL to the jail's pid 1 (--die-with-parent), and the end of
            # a pid namespace's first process ends every other one in it. Not proc.kill(): Popen
            # polls first, and could reap the pid behind asyncio's back.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if self._first_pid is not None:  # wait for that, so that nothing outlives close()
                await _ended(self._first_pid)
        self._first_pid = None
        net, self._net = self._net, None
        if net is not None:  # after the jail: its stack has nothing left to serve
            await net.close()
        self._close_control()
        for task in (self._events, self._errors):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._ended.set()
        for fd in [*self._ends.values(), *([self._info] if self._info is not None else [])]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._ends.clear()
        self._info = None


async def _ended(pid: int, timeout: float = 5) -> None:
    """Until a process is gone or a zombie: for a jail's pid 1, the kernel has then ended
    every other process of its pid namespace. A pidfd says so the moment it happens (a close
    is on every temporary call's path); polling /proc is the fallback."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        await _polled_until_ended(pid, timeout)
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(exited, timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _polled_until_ended(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[0] == b"Z":
                    return
        except (OSError, IndexError):
            return
        await asyncio.sleep(0.005)
