"""Network for a jail that may have it, without the host: slirp4netns, a user-mode stack.

Every jail has a network namespace of its own (bwrap ``--unshare-net``). One whose config
says ``"network": true`` gets a TAP device there, ``tap0`` (10.0.2.100/24, gateway 10.0.2.2,
DNS 10.0.2.3), served by a ``slirp4netns`` process on the host that turns the jail's packets
into the worker's own sockets. ``--disable-host-loopback`` refuses every connection to the
gateway (which slirp would map to the host's 127.0.0.1), and the jail's own 127.0.0.1 is its
own loopback: no service of the host's loopback (the Temporal frontend, its UI, the HTTP API, a
codec server) and no other session's abstract unix socket (an X display) is reachable. Outbound
connections to other addresses go out as the worker's: services the host binds on all addresses
are reachable at its address, as from any machine of its network. 10.0.2.3 answers DNS by
forwarding to the host's resolvers (``/etc/resolv.conf``); the jail's resolv.conf names it.

The stack starts once bwrap has set the jail up (its first process has executed the
supervisor, which waits for the worker's word before it starts the program), so the program
starts with its network up. It ends with the jail (:meth:`UserNet.close`) and with the
worker: it watches a pipe whose other end only the worker holds (``--exit-fd``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Callable

SLIRP = "slirp4netns"
PACKAGE = "slirp4netns"
#: The jail's resolver: slirp4netns forwards this address's port 53 to the host's resolvers.
DNS = "10.0.2.3"
GATEWAY = "10.0.2.2"
RESOLV_CONF = f"nameserver {DNS}\n".encode()
#: ioctl(2) on a namespace descriptor: the user namespace that owns it (linux/nsfs.h).
_NS_GET_USERNS = 0xB701
_TUN = "/dev/net/tun"
_HOST_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


class NetworkUnavailable(RuntimeError):
    """The user-mode stack is missing or could not attach to the jail."""


def missing() -> str | None:
    """Why a jail with network cannot be made here (what to install), or None."""
    if shutil.which(SLIRP) is None:
        return (
            f"sessions with network need {SLIRP}: install the Debian package '{PACKAGE}' "
            "(scripts/setup.sh does)"
        )
    if not os.path.exists(_TUN):
        return f"sessions with network need the TUN device {_TUN} (a container needs it passed in)"
    return None


def resolv_conf_path() -> str | None:
    """Where the jail's resolv.conf goes: the host's, followed through links (bwrap mounts
    over the file the name leads to); None when the host has none to cover."""
    path = os.path.realpath("/etc/resolv.conf")
    return path if os.path.isfile(path) else None


async def read_fd(fd: int, done: Callable[[bytes], bool], timeout: float) -> bytes:
    """Read a pipe until ``done(data)`` or its end, at most ``timeout`` seconds (TimeoutError)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = bytearray()
    finished: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data.extend(chunk)
        if (not chunk or done(bytes(data))) and not finished.done():
            finished.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(finished, timeout)
    finally:
        loop.remove_reader(fd)
    return bytes(data)


def _whole_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


async def first_pid(info_fd: int, timeout: float) -> int:
    """The host pid of the jail's first process, from bwrap's ``--info-fd`` (whole JSON)."""
    raw = await read_fd(info_fd, _whole_json, timeout)
    try:
        return int(json.loads(raw)["child-pid"])
    except (ValueError, KeyError, TypeError):
        raise NetworkUnavailable(f"bwrap told no sandbox pid ({raw[:200]!r})") from None


async def until_exec(pid: int, before: str, timeout: float) -> None:
    """Until process ``pid`` runs a program other than ``before`` (its ``comm``): it executed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != before:
                    return
        except OSError:
            raise NetworkUnavailable("the sandbox ended before its network was attached") from None
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the sandbox did not start within {timeout:g} s")
        await asyncio.sleep(0.001)


class UserNet:
    """One jail's slirp4netns process."""

    def __init__(self, proc: asyncio.subprocess.Process, exit_w: int) -> None:
        self.proc = proc
        self._exit_w: int | None = exit_w
        self._stderr: collections.deque[bytes] = collections.deque(maxlen=32)
        self._reader = asyncio.create_task(self._read_stderr())

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, pid: int, *, timeout: float = 10) -> UserNet:
        """Attach a stack to the network namespace of the jail whose first process is ``pid``
        and wait until ``tap0`` is configured."""
        netns = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            # bwrap nests a user namespace of its own under the one that owns the network
            # namespace; joining the process's would leave slirp4netns without CAP_NET_ADMIN.
            userns = fcntl.ioctl(netns, _NS_GET_USERNS)
        except OSError:
            os.close(netns)
            raise
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        cmd = [SLIRP, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-seccomp"]
        if os.geteuid() == 0:
            # It needs the TUN device (root's alone on many hosts) and to enter the jail's
            # namespaces; --enable-sandbox then drops every capability and hides the host's files.
            cmd.append("--enable-sandbox")
        cmd += [
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_r}",
            f"--userns-path=/proc/self/fd/{userns}",
            "--netns-type=path",
            f"/proc/self/fd/{netns}",
            "tap0",
        ]
        passed = [ready_w, exit_r, userns, netns]
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=passed,
                env=_HOST_ENV,
                cwd="/",
                start_new_session=True,
            )
        except BaseException:
            for fd in (ready_r, exit_w):
                os.close(fd)
            raise
        finally:
            for fd in passed:
                os.close(fd)
        net = cls(proc, exit_w)
        try:
            ready = await read_fd(ready_r, lambda data: bool(data), timeout)
        except BaseException:
            await net.close()
            raise
        finally:
            os.close(ready_r)
        if not ready:
            await net.close()
            raise NetworkUnavailable(f"{SLIRP} could not attach: {net.stderr_text()}")
        return net

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(4096):
            self._stderr.append(chunk)

    def stderr_text(self) -> str:
        text = b"".join(self._stderr).decode(errors="replace")
        lines = [line for line in text.splitlines() if "seccomp is experimental" not in line]
        return "\n".join(lines).strip()[-1000:] or "no message"

    async def close(self, timeout: float = 2) -> None:
        """End the stack: close its exit pipe, then kill it (by its own pid) if it lingers."""
        fd, self._exit_w = self._exit_w, None
        if fd is not None:
            os.close(fd)
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._reader, 1)
        if not self._reader.done():
            self._reader.cancel()
