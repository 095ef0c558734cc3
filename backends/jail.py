"""Each session's processes run in a bubblewrap jail: the settings, the command, the process.

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
import re
import shutil
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from backends import jail_net

INIT = Path(__file__).with_name("jail_init.py")
#: File work inside the jail (fingerprint, archive, confined reads and writes); loaded by INIT.
FILES = Path(__file__).with_name("jail_files.py")
#: Where the jail sees the files the worker hands it (read-only).
INSIDE_DIR = "/run/durable-sessions"
WORKSPACE = "/workspace"
#: Directories a session may write; a working directory under them is created on start.
WRITABLE = (WORKSPACE, "/tmp")
#: The read-only view of the system (symlinks, as on merged-/usr systems, are kept as links).
SYSTEM_VIEW = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: The user the jail runs as ("nobody"); a root worker drops to it before bwrap starts.
JAIL_UID = 65534
JAIL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The environment of setpriv, bwrap and the supervisor themselves: never the session's (an
#: ``LD_PRELOAD`` in a session's config must not reach a process that runs outside the jail).
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
ISOLATION_MODES = ("bwrap", "none")
PACKAGE_HINT = (
    "install the Debian package 'bubblewrap' (scripts/setup.sh does); for trusted local use "
    'only, a worker started with --session-allow isolation=none runs "isolation": "none" sessions'
)


@dataclass(frozen=True)
class Setting:
    default: int
    low: int
    high: int
    unit: str


#: Every numeric jail setting: default and allowed range (README, Security > Isolation).
SETTINGS: dict[str, Setting] = {
    "memory_mb": Setting(1024, 128, 65536, "MiB of address space per process (RLIMIT_AS)"),
    "processes": Setting(256, 16, 4096, "processes and threads in the sandbox (RLIMIT_NPROC)"),
    "file_size_mb": Setting(1024, 1, 65536, "MiB per written file (RLIMIT_FSIZE)"),
    "open_files": Setting(1024, 64, 65536, "open descriptors per process (RLIMIT_NOFILE)"),
    "cpu_seconds": Setting(3600, 1, 604800, "CPU seconds per process (RLIMIT_CPU)"),
    "workspace_mb": Setting(1024, 1, 65536, f"MiB of {WORKSPACE} (tmpfs)"),
    "tmp_mb": Setting(256, 1, 65536, "MiB of /tmp, and of /dev/shm (tmpfs each)"),
    "nice": Setting(10, 0, 19, "scheduling niceness of every sandboxed process"),
}


class JailUnavailable(RuntimeError):
    """Isolation was asked for and this machine cannot provide it."""


class ControlError(RuntimeError):
    """The supervisor refused or failed a request of the control channel."""


class FileOpError(Exception):
    """A file operation inside the jail was refused or failed; ``kind`` says how:
    ``invalid`` (a path outside the workspace, a wrong kind of file), ``not_found``,
    ``too_large`` (no room) or ``error``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class JailSettings:
    """How one session's processes are isolated; read from its config by :func:`settings_from`."""

    isolation: str = "bwrap"
    network: bool = False
    memory_mb: int = SETTINGS["memory_mb"].default
    processes: int = SETTINGS["processes"].default
    file_size_mb: int = SETTINGS["file_size_mb"].default
    open_files: int = SETTINGS["open_files"].default
    cpu_seconds: int = SETTINGS["cpu_seconds"].default
    workspace_mb: int = SETTINGS["workspace_mb"].default
    tmp_mb: int = SETTINGS["tmp_mb"].default
    nice: int = SETTINGS["nice"].default

    @property
    def isolated(self) -> bool:
        return self.isolation != "none"

    def rlimits(self) -> dict[str, int]:
        mib = 1024 * 1024
        return {
            "as": self.memory_mb * mib,
            "nproc": self.processes,
            "fsize": self.file_size_mb * mib,
            "nofile": self.open_files,
            "cpu": self.cpu_seconds,
            "core": 0,
        }


def settings_from(config: Mapping[str, Any]) -> JailSettings:
    """Read and check the jail keys of a session's config; a clear ValueError otherwise."""
    isolation = config.get("isolation", "bwrap")
    if isolation not in ISOLATION_MODES:
        raise ValueError(
            f"isolation {isolation!r} is not one of {', '.join(map(repr, ISOLATION_MODES))}"
        )
    network = config.get("network", False)
    if not isinstance(network, bool):
        raise ValueError(f"network must be true or false, not {network!r}")
    values: dict[str, int] = {}
    for key, spec in SETTINGS.items():
        value = config.get(key, spec.default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer in {spec.low}..{spec.high}, not {value!r}")
        if not spec.low <= value <= spec.high:
            raise ValueError(f"{key} {value} is outside {spec.low}..{spec.high} ({spec.unit})")
        values[key] = value
    return JailSettings(isolation=isolation, network=network, **values)


def base_env(settings: JailSettings) -> dict[str, str]:
    """What every jailed program starts with, before the config's ``env``; never more.

    The worker's own environment (its encryption keys, cloud credentials) is never passed on.
    """
    if settings.isolated:
        return {
            "PATH": JAIL_PATH,
            "HOME": WORKSPACE,
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "USER": "nobody",
            "LOGNAME": "nobody",
        }
    return {
        "PATH": os.environ.get("PATH", JAIL_PATH),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }


def default_cwd(settings: JailSettings) -> str:
    return WORKSPACE if settings.isolated else os.getcwd()


def under(path: str, roots: Sequence[str]) -> bool:
    norm = os.path.normpath(path)
    return any(norm == r or norm.startswith(r.rstrip("/") + "/") for r in roots)


def _drops_to_jail_user() -> bool:
    return os.geteuid() == 0


def _reachable(path: str) -> bool:
    """Can the jail user run this file (every directory on the way searchable)?"""
    if not _drops_to_jail_user():
        return os.access(path, os.X_OK)
    for candidate in {path, os.path.realpath(path)}:
        try:
            if not stat.S_IMODE(os.stat(candidate).st_mode) & stat.S_IXOTH:
                return False
        except OSError:
            return False
        parent = os.path.dirname(candidate)
        while parent not in ("/", ""):
            try:
                if not os.stat(parent).st_mode & stat.S_IXOTH:
                    return False
            except OSError:
                return False
            parent = os.path.dirname(parent)
    return True


def _python_binds() -> list[str]:
    """Host directories the worker's own interpreter needs inside the jail."""
    binds = []
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, sys.exec_prefix]):
        if prefix and not under(prefix, SYSTEM_VIEW):
            binds.append(prefix)
    return binds


@cache
def jail_python(requested: str | None = None) -> tuple[str, tuple[str, ...]]:
    """An interpreter the jail can run, and the host directories to show for it.

    The worker's own when the jail user can reach it, else the system's ``python3``.
    A requested one must be the worker's or lie in the system view (``/usr``): config never
    adds a host directory to the view.
    """
    if requested is not None and requested != sys.executable:
        if not under(requested, SYSTEM_VIEW) or not os.path.isfile(requested):
            raise ValueError(
                f"python {requested!r} is not visible inside the sandbox: use one under /usr "
                f"(e.g. /usr/bin/python3) or the worker's own ({sys.executable})"
            )
        return requested, ()
    if _reachable(sys.executable):
        return sys.executable, tuple(_python_binds())
    if requested is not None:
        raise ValueError(
            f"python {requested!r} lies where the sandbox user cannot read it; use /usr/bin/python3"
        )
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.isfile(candidate) and _reachable(candidate):
            return candidate, ()
    raise JailUnavailable(
        "the sandbox needs a Python 3 interpreter the sandbox user can run (the worker's lies "
        "where uid 65534 cannot read it): install the Debian package 'python3'"
    )


@lru_cache(maxsize=1)
def _bwrap_version() -> tuple[int, ...]:
    import subprocess

    out = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout)
    return tuple(int(p) for p in found.groups(default="0")) if found else (0,)


def check_available(settings: JailSettings) -> None:
    """Raise :class:`JailUnavailable`, naming what to install, when isolation cannot work."""
    if not settings.isolated:
        return
    if shutil.which("bwrap") is None:
        raise JailUnavailable(f"isolated sessions need bubblewrap (bwrap): {PACKAGE_HINT}")
    if _drops_to_jail_user() and shutil.which("setpriv") is None:
        raise JailUnavailable(
            "a worker running as root needs setpriv (Debian package 'util-linux') to start "
            "sandboxes as an unprivileged user"
        )
    if settings.network and (why := jail_net.missing()) is not None:
        raise JailUnavailable(why)


def bwrap_command(
    settings: JailSettings,
    *,
    python: str,
    binds: Sequence[str],
    data_files: Mapping[str, int],
    sockets: Sequence[str] = (),
    info_fd: int | None = None,
) -> list[str]:
    """The command that starts the supervisor inside a new jail.

    ``data_files`` maps a path inside the jail to a descriptor holding the file's bytes;
    ``sockets`` are host socket paths shown at the same place (an X display's socket);
    ``info_fd`` receives bwrap's JSON facts (the host pid of the jail's first process).
    """
    mib = 1024 * 1024
    cmd: list[str] = []
    if _drops_to_jail_user():
        uid = str(JAIL_UID)
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    cmd += ["bwrap", "--unshare-user", "--uid", str(JAIL_UID), "--gid", str(JAIL_UID)]
    if _bwrap_version() >= (0, 8):
        cmd.append("--disable-userns")  # no nested user namespaces: less kernel surface
    # Always a network namespace of its own: never the host's loopback or abstract sockets.
    cmd += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    cmd += ["--unshare-net", "--die-with-parent", "--new-session", "--as-pid-1"]
    cmd += ["--hostname", "sandbox"]
    if info_fd is not None:
        cmd += ["--info-fd", str(info_fd)]
    for path in SYSTEM_VIEW:
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    for path in binds:
        cmd += ["--ro-bind", path, path]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--perms", "1777", "--size", str(settings.tmp_mb * mib), "--tmpfs", "/tmp"]
    cmd += ["--perms", "1777", "--size", str(settings.tmp_mb * mib), "--tmpfs", "/dev/shm"]
    cmd += ["--perms", "0700", "--size", str(settings.workspace_mb * mib), "--tmpfs", WORKSPACE]
    for path in sockets:
        cmd += ["--bind", path, path]
    for inside, fd in data_files.items():
        cmd += ["--perms", "0444", "--ro-bind-data", str(fd), inside]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/"]
    cmd += ["--", python, "-I", "-S", f"{INSIDE_DIR}/{INIT.name}"]
    return cmd


class JailedProcess:
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
                for host_file in [INIT, FILES, *self.files]:
                    data[self.path_of(host_file)] = _data_fd(host_file.read_bytes())
                self._info, info_w = os.pipe()
                inside.append(info_w)
                if self.settings.network and (resolv := jail_net.resolv_conf_path()):
                    data[resolv] = _data_fd(jail_net.RESOLV_CONF)
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
                env=_HOST_ENV,
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
        assert self._proc.stdin is not None
        self._events = asyncio.create_task(self._read_events())
        self._errors = asyncio.create_task(self._read_stderr())
        control.setblocking(False)
        asyncio.get_running_loop().add_reader(control.fileno(), self._on_control)
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

    # --- the control channel (background processes, stdin FIFOs, files) ----------------------

    def _on_control(self) -> None:
        sock = self._control
        if sock is None:
            return
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 16, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the jail is gone
                self._close_control()
                return
            try:
                message = json.loads(data)
            except ValueError:
                message = {}
            waiter = self._calls.pop(message.get("id"), None) if "id" in message else None
            if waiter is not None and not waiter.done():
                waiter.set_result((message, fds))
                continue
            for fd in fds:
                os.close(fd)
            if "event" in message and self.on_event is not None:
                try:
                    self.on_event(message)
                except Exception:  # an observer's failure must not stop the channel
                    import logging

                    logging.getLogger(__name__).exception("sandbox event handler failed")

    def _close_control(self) -> None:
        sock, self._control = self._control, None
        if sock is not None:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        calls, self._calls = self._calls, {}
        for waiter in calls.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the sandbox has ended"))

    async def request(
        self, op: str, fds: Sequence[int] = (), *, timeout: float = 30, **fields: Any
    ) -> tuple[dict[str, Any], list[int]]:
        """One request to the supervisor: its answer and the descriptors it sent (the caller
        owns them). The descriptors in ``fds`` are sent, not closed."""
        sock = self._control
        if sock is None or not self.alive:
            raise ConnectionError("the sandbox has ended")
        ident = next(self._ids)
        waiter: asyncio.Future[tuple[dict[str, Any], list[int]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._calls[ident] = waiter
        message = json.dumps({"op": op, "id": ident, **fields}).encode()
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.send_fds(sock, [message], list(fds))
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._calls.pop(ident, None)
                    raise TimeoutError(
                        "the sandbox's supervisor does not read its requests"
                    ) from None
                await asyncio.sleep(0.005)
            except OSError as exc:
                self._calls.pop(ident, None)
                raise ConnectionError(f"the sandbox has ended ({exc})") from None
        try:
            answer, received = await asyncio.wait_for(waiter, timeout)
        finally:
            self._calls.pop(ident, None)
        if "error" in answer:
            for fd in received:
                os.close(fd)
            raise ControlError(str(answer["error"]))
        return answer, received

    async def file_op(
        self,
        request: Mapping[str, Any],
        data: bytes | None = None,
        *,
        limit: int,
        timeout: float = 120,
    ) -> tuple[dict[str, Any], bytes]:
        """Run one :mod:`backends.jail_files` operation in a helper inside the jail.

        ``data`` is streamed to it; the answer is its header and at most ``limit`` bytes of
        payload. Raises :class:`FileOpError` with the helper's own verdict.
        """
        reply_r, reply_w = os.pipe()
        data_r = data_w = -1
        mine = [reply_r]
        theirs = [reply_w]
        if data is not None:
            data_r, data_w = os.pipe()
            mine.append(data_w)
            theirs.append(data_r)
        loop = asyncio.get_running_loop()
        try:
            await self.request(
                "files", theirs, timeout=timeout, request=dict(request), timeout_s=timeout
            )
        except BaseException:
            for fd in mine + theirs:
                os.close(fd)
            raise
        for fd in theirs:
            os.close(fd)
        reader = asyncio.StreamReader(limit=1 << 16)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(reply_r, "rb", buffering=0)
        )
        feeder: asyncio.Task[None] | None = None
        pipe = os.fdopen(data_w, "wb", buffering=0) if data is not None else None
        if pipe is not None and data is not None:
            feeder = asyncio.create_task(_feed(pipe, data))
        try:
            reply = await asyncio.wait_for(_read_reply(reader, limit), timeout)
        finally:
            transport.close()
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feeder
            if pipe is not None:
                pipe.close()  # when the feeder never ran: the helper must see the end
        header_line, _, payload = reply.partition(b"\n")
        try:
            header = json.loads(header_line)
        except ValueError:
            raise FileOpError("error", "the sandbox's file helper gave no answer") from None
        if not header.get("ok"):
            raise FileOpError(str(header.get("kind", "error")), str(header.get("message", "")))
        return header, payload

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


async def _feed(pipe: Any, data: bytes) -> None:
    """Write ``data`` to a pipe, then close it (the reader sees the end)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        writer.write(data)
        await writer.drain()
    finally:
        writer.close()


async def _read_reply(reader: asyncio.StreamReader, limit: int) -> bytes:
    """A helper's whole answer, refused past ``limit`` bytes of payload (plus its header)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await reader.read(1 << 20):
        total += len(chunk)
        if total > limit + (1 << 20):
            raise FileOpError("too_large", f"the answer is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _ended(pid: int, timeout: float = 5) -> None:
    """Until a process is gone or a zombie: for a jail's pid 1, the kernel has then ended
    every other process of its pid namespace."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[0] == b"Z":
                    return
        except (OSError, IndexError):
            return
        await asyncio.sleep(0.005)


def _data_fd(content: bytes) -> int:
    """A descriptor bwrap reads a file's bytes from (a pipe: these files are small)."""
    if len(content) >= 60_000:
        raise ValueError("a file handed to the sandbox must stay under 60 kB")
    r, w = os.pipe()
    try:
        os.write(w, content)
    finally:
        os.close(w)
    return r
