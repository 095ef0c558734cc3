"""What a jail is, before one starts: its settings, what the machine must have, the command.

:mod:`backends.jail` starts and drives jails from these; a session's config is read here
(:func:`settings_from`), and the operator's ceiling on it in :mod:`backends.jail_policy`.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from backends import jail_net

INIT = Path(__file__).with_name("jail_init.py")
#: The supervisor's control requests and process helpers; loaded by INIT at its start.
REQUESTS = Path(__file__).with_name("jail_requests.py")
#: File work inside the jail (fingerprint, archive, confined reads and writes); loaded by INIT.
FILES = Path(__file__).with_name("jail_files.py")
#: The workspace archive (pack, unpack) inside the jail; loaded by INIT beside FILES.
ARCHIVE = Path(__file__).with_name("jail_archive.py")
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
HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
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


#: Every numeric jail setting: default and allowed range (docs/security.md).
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


def data_fd(content: bytes) -> int:
    """A descriptor bwrap reads a file's bytes from (a pipe: these files are small)."""
    if len(content) >= 60_000:
        raise ValueError("a file handed to the sandbox must stay under 60 kB")
    r, w = os.pipe()
    try:
        os.write(w, content)
    finally:
        os.close(w)
    return r
