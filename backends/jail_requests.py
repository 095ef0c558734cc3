"""The supervisor's control channel inside a session's jail: the requests the worker sends on
its ``SOCK_SEQPACKET`` socket (spawn, signal, fifo, unlink, scan, manifest, files; see
:mod:`backends.jail_init`), and the process and descriptor helpers the supervisor shares.

Loaded by :mod:`backends.jail_init` by path at its start (the jail has no packages), as a mixin
of its ``Supervisor``; handed into the jail beside it. Standard library only, any Python 3.8+.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

#: Signals the supervisor ignores (its children get them back at their default).
_IGNORED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGUSR1", "SIGUSR2", "SIGTSTP")


class Requests:
    """The control requests, as methods of ``jail_init.Supervisor`` (which holds the state)."""

    cwd: str
    root: str
    child: int
    own_namespace: bool
    background: dict
    background_sessions: set
    helpers: set
    fifo_dir: str
    control: socket.socket | None
    _files_module: Any
    _limit_self: Callable[[], None]

    def tell(self, message: dict, fds: list = ()) -> None:  # type: ignore[assignment]
        if self.control is not None:
            try:
                _send(self.control, message, fds)
            except OSError:
                pass

    def on_control(self) -> bool:
        """Answer one request of the control socket; False once the worker closed it."""
        if self.control is None:
            return False
        try:
            data, fds = _recv(self.control)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data and not fds:
            return False
        request: dict = {}
        answer: dict = {}
        sent: list = []
        try:
            request = json.loads(data)
            op = request.get("op")
            if op == "spawn":
                answer = self.spawn_background(request, fds)
            elif op == "signal":
                answer = self.signal(request)
            elif op == "fifo":
                answer, sent = self.make_fifo()
            elif op == "unlink":
                answer = self.unlink_fifo(request)
            elif op == "scan":
                answer = self.files_module().scan(self.root)
            elif op == "manifest":  # inline: the hash cache lives in this process
                self.files_module()
                answer = sys.modules["jail_archive"].op_manifest(self.root, request)
            elif op == "files":
                answer = self.files(request, fds)
            else:
                answer = {"error": f"unknown request {op!r}"}
        except Exception as exc:  # noqa: BLE001 - every failure is an answer
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                _close(fd)
        self.tell(dict(answer, id=request.get("id")), sent)
        for fd in sent:
            _close(fd)
        return True

    def files_module(self):  # type: ignore[no-untyped-def]
        """:mod:`jail_files`, loaded once (before any fork: helpers inherit it), and beside it
        :mod:`jail_archive`, which imports it by name (both are registered in ``sys.modules``)."""
        if self._files_module is None:
            import importlib.util

            here = os.path.dirname(os.path.abspath(__file__))
            for name in ("jail_files", "jail_archive"):
                path = os.path.join(here, f"{name}.py")
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                sys.modules[name] = module
                spec.loader.exec_module(module)  # type: ignore[union-attr]
            self._files_module = sys.modules["jail_files"]
        return self._files_module

    def _child_setup(self, keep: dict) -> None:
        """In a freshly forked child: default signals, and only the descriptors in ``keep``
        (child fd -> inherited fd) open; everything else of the supervisor's is closed."""
        signal.set_wakeup_fd(-1)
        for name in _IGNORED:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        staged = [(child, _fcntl_dupfd(devnull if src < 0 else src)) for child, src in keep.items()]
        for child, fd in staged:
            os.dup2(fd, child)
        top = max([2, *keep])
        for fd in range(0, top + 1):
            if fd not in keep:
                _close(fd)
        os.closerange(top + 1, 65536)

    def spawn_background(self, request: dict, fds: list) -> dict:
        """A background process: ``bash -c`` in its own session, on the pipes sent along
        (its stdin, and one pipe for stdout and stderr together)."""
        if len(fds) != 2:
            return {"error": "spawn needs two descriptors: stdin and output"}
        argv = [str(a) for a in request["argv"]]
        env = {str(k): str(v) for k, v in request["env"].items()}
        cwd = str(request.get("cwd") or self.cwd)
        # Checked before the fork: a child that cannot enter it would look started, then exit.
        if not os.path.isdir(cwd) or not os.access(cwd, os.X_OK):
            return {"refused": f"cwd {cwd} is not a directory the session can enter"}
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                self._limit_self()
                self._child_setup({0: fds[0], 1: fds[1], 2: fds[1]})
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                try:
                    os.chdir(cwd)
                except OSError as exc:
                    os.write(2, f"cannot enter {cwd}: {exc.strerror}\n".encode())
                    os._exit(126)
                os.execvpe(argv[0], argv, env)
            except BaseException as exc:  # noqa: BLE001
                try:
                    os.write(2, f"cannot start {argv[0]}: {exc}\n".encode()[:4000])
                finally:
                    os._exit(127)
        self.background[pid] = str(request.get("handle", pid))
        self.background_sessions.add(pid)
        return {"pid": pid}

    def signal(self, request: dict) -> dict:
        sig = int(request.get("signal", signal.SIGINT))
        if request.get("target") == "program":
            if not self.child:
                return {"signalled": 0}
            _kill_quietly(-self.child, sig)
            return {"signalled": 1}
        session = int(request["pid"])
        if session not in self.background_sessions:
            return {"error": f"{session} is not a background process of this sandbox"}
        if not self.own_namespace:
            return {"signalled": int(_kill_quietly(-session, sig))}
        members = [pid for pid, sid in _processes() if sid == session]
        for pid in members:
            _kill_quietly(pid, sig)
        return {"signalled": len(members)}

    def make_fifo(self) -> tuple:
        """A FIFO for one command's standard input, and its end to write (read-write, so
        that opening it never blocks and the FIFO ends when that descriptor closes)."""
        import tempfile

        if not self.fifo_dir or not os.path.isdir(self.fifo_dir):
            self.fifo_dir = tempfile.mkdtemp(prefix=".stdin-", dir="/tmp")
        path = os.path.join(self.fifo_dir, os.urandom(8).hex())
        os.mkfifo(path, 0o600)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return {"path": path}, [fd]

    def remove_fifos(self) -> None:
        """The FIFO folder goes with the supervisor (with ``isolation: none`` it is the host's)."""
        if not self.fifo_dir:
            return
        try:
            for name in os.listdir(self.fifo_dir):
                os.unlink(os.path.join(self.fifo_dir, name))
            os.rmdir(self.fifo_dir)
        except OSError:
            pass

    def unlink_fifo(self, request: dict) -> dict:
        path = str(request.get("path", ""))
        if self.fifo_dir and os.path.dirname(path) == self.fifo_dir:
            try:
                os.unlink(path)
            except OSError:
                pass
        return {}

    def files(self, request: dict, fds: list) -> dict:
        """Fork a helper for one file operation; it answers on the first descriptor sent."""
        if not fds:
            return {"error": "a file operation needs a reply descriptor"}
        module = self.files_module()
        reply = fds[0]
        data = fds[1] if len(fds) > 1 else -1
        pid = os.fork()
        if pid == 0:
            try:
                keep = {3: reply}
                if data >= 0:
                    keep[4] = data
                self._limit_self()
                self._child_setup({0: -1, 1: -1, 2: -1, **keep})
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.alarm(max(1, int(request.get("timeout_s", 300)) + 5))
                module.serve(self.root, request.get("request", {}), 3, 4 if data >= 0 else -1)
            finally:
                os._exit(0)
        self.helpers.add(pid)
        return {"pid": pid}


def _kill_quietly(pid: int, sig: int) -> bool:
    try:
        if pid < 0:
            os.killpg(-pid, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _processes() -> list:
    """(pid, session id) of every live process this /proc shows (zombies left out)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 3 and fields[0] != b"Z":
            found.append((int(name), int(fields[3])))
    return found


def _recv(sock: socket.socket) -> tuple:
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(
        1 << 20, socket.CMSG_SPACE(16 * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds)


def _send(sock: socket.socket, message: dict, fds: list = ()) -> None:  # type: ignore[assignment]
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([json.dumps(message).encode()], ancillary)


def _fcntl_dupfd(fd: int, *, cloexec: bool = False) -> int:
    """A copy of ``fd`` numbered 100 or more (200 or more, closed on exec, with ``cloexec``)."""
    import fcntl

    if cloexec:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 200)
    return fcntl.fcntl(fd, fcntl.F_DUPFD, 100)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
