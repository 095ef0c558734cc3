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
