"""What `serve` checks before it starts anything: every port it will listen on is free, and no
other `serve` uses its data folder. A second `./run.sh` beside a running one stops here with
what holds the port and what to do, instead of starting a worker and a demo against the other
server."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class PreflightError(Exception):
    """`serve` cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Listener:
    """A port `serve` (or its dev server) will listen on."""

    what: str
    option: str
    host: str
    port: int


def check_ports(listeners: list[Listener]) -> None:
    """Raise PreflightError naming every busy port, what holds it, and how to go on."""
    busy = [item for item in listeners if in_use(item.host, item.port)]
    if not busy:
        return
    lines = []
    temporal = False
    for item in busy:
        holder = port_holder(item.port)
        temporal = temporal or bool(holder and "temporal" in holder)
        held = f"held by {holder}" if holder else "in use by another process"
        lines.append(f"port {item.port} on {item.host} ({item.what}, {item.option}) is {held}")
    others = [
        f"{item.option} {port}"
        for item, port in zip(listeners, free_neighbours(listeners), strict=True)
        if port != item.port
    ]
    advice = []
    if temporal:
        advice.append(
            "A Temporal server already runs there (another `./run.sh`?). Use it: "
            "`python worker.py` adds a worker, `durable-sessions demo` runs the demo, "
            "`durable-sessions sessions ls` lists its sessions (--address names it); or stop it."
        )
    else:
        advice.append("Stop that process, or choose other ports.")
    advice.append(
        "To run a second server beside it: ./run.sh "
        + " ".join(others or [f"{item.option} <port>" for item in busy])
        + " --data-dir .data-2"
    )
    raise PreflightError("\n".join(["cannot start:", *lines, *advice]))


def in_use(host: str, port: int) -> bool:
    """True when something listens on ``host:port`` (binding it fails as the server's would)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As Go's listeners do: a port left in TIME_WAIT by a stopped server is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise PreflightError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return False


def free_neighbours(listeners: list[Listener]) -> list[int]:
    """Each port, moved up by the first offset (1-50) at which all of them are free."""
    for offset in range(1, 51):
        if not any(in_use(item.host, item.port + offset) for item in listeners):
            return [item.port + offset for item in listeners]
    return [item.port for item in listeners]


def port_holder(port: int) -> str | None:
    """``pid N: command line`` of the process listening on ``port`` (Linux, best effort: only
    processes this user may inspect), or None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            listening = len(fields) > 9 and fields[3] == "0A"  # 0A: LISTEN
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    return f"pid {proc.name}: {textwrap.shorten(command, 140)}"
        except OSError:
            continue
    return None


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold ``data_dir/serve.lock`` for the life of the process (the caller keeps the file);
    PreflightError when another `serve` holds it: two servers must not share one SQLite file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "serve.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        other = lock.read().strip() or "?"
        lock.close()
        raise PreflightError(
            f"cannot start: another `durable-sessions serve` (pid {other}) uses {data_dir}; "
            "use that one, stop it, or give this one its own --data-dir"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
