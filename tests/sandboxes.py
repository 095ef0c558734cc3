"""Looking at session sandboxes from the host: which processes live in one, and what it wrote."""

from __future__ import annotations

import os

#: A command (bash) that prints the sandbox's pid namespace, e.g. ``pid:[4026532181]``.
NS_COMMAND = "readlink /proc/self/ns/pid"
#: The same from Python code (a ``code`` cell).
NS_CODE = "__import__('os').readlink('/proc/self/ns/pid')"


def processes_in(namespace: str) -> list[int]:
    """Host pids of the live (not zombie) processes in a pid namespace (``pid:[N]``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] != "Z":
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def alive(namespace: str) -> bool:
    """Does anything still run in this sandbox's pid namespace?"""
    return bool(processes_in(namespace))


def host_pids(marker: str) -> list[int]:
    """Host pids of live processes whose command line contains ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() not in f.read():
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] != "Z":
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def host_address() -> str | None:
    """This machine's own non-loopback IPv4 address (where its default route leaves), or None.

    A UDP socket's connect sends nothing: it only picks the route and so the source address."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))  # TEST-NET-1: never answered, only routed
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def children_named(parent: int, name: str) -> list[int]:
    """Host pids of the live children of ``parent`` whose command is ``name``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                comm, _, rest = f.read().partition("(")[2].rpartition(")")
            fields = rest.split()
        except (OSError, ValueError):
            continue
        if comm == name and fields[0] != "Z" and int(fields[1]) == parent:
            pids.append(int(entry))
    return pids


def running(pid: int) -> bool:
    """Is this host pid a live process (not gone, not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False
