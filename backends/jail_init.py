"""The first process of a session's jail: it starts the session's program, and ends it.

Started by :mod:`backends.jail` as ``python3 -I -S jail_init.py`` (inside bubblewrap it is
the jail's pid 1). Standard library only, any Python 3.8+: it runs with whatever interpreter
the jail can see, never with the worker's packages.

It reads its spec as the first line of its standard input (JSON, never in argv, where other users
of the machine could read it: it holds the session's environment), then obeys one command a line:

- ``restart``: end every other process of the jail, then start the program afresh
- ``signal N``: send signal N to the program
- ``stop``: end everything and exit (so does the end of its standard input)

and reports on its standard output: ``started GEN PID``, ``failed GEN MESSAGE`` (the program
could not be executed), ``exited GEN STATUS`` (an exit code, or minus the signal number),
``error MESSAGE`` (then it exits).

A second channel, a ``SOCK_SEQPACKET`` socket (``control_fd`` in the spec), carries requests that
hand descriptors over (``SCM_RIGHTS``): one JSON message each, answered with the same ``id``:

- ``spawn``: start a background process (its own session, the program's limits) on the stdin
  and output pipes sent along; its end is reported as ``{"event": "exited", "handle", "status"}``
- ``signal``: signal the program's process group (``"target": "program"``, Ctrl-C) or every
  process of a background process's session (``"target": "background"``)
- ``fifo``: make a FIFO for a command's standard input; the answer carries its writable end
- ``unlink``: remove such a FIFO
- ``scan``: the workspace's fingerprint (:func:`jail_files.scan`; no file is opened)
- ``files``: fork a helper that runs one :mod:`jail_files` operation and answers on the pipe
  sent along

As pid 1 of a pid namespace, ``kill(-1, SIGKILL)`` ends every other process in the jail,
``setsid`` and double-forked daemons included, and no process in the jail can signal it.
A ``restart`` ends every process except the sessions of background processes and of the
supervisor itself (its helpers): the foreground's daemons end, background processes live on.
Outside a pid namespace (``isolation: none``) it ends the program's process group only.
"""

from __future__ import annotations

import array
import errno
import json
import os
import select
import signal
import socket
import time
from typing import Any

#: Seconds a timed-out command's processes get to exit before everything in the jail ends.
END_PROGRAM_SECONDS = 5.0
_IGNORED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGUSR1", "SIGUSR2", "SIGTSTP")
_LIMITS = {
    "as": "RLIMIT_AS",
    "nproc": "RLIMIT_NPROC",
    "fsize": "RLIMIT_FSIZE",
    "nofile": "RLIMIT_NOFILE",
    "cpu": "RLIMIT_CPU",
    "core": "RLIMIT_CORE",
}


def _emit(line: str) -> None:
    data = (line + "\n").encode("utf-8", "replace")
    while data:
        try:
            data = data[os.write(1, data) :]
        except InterruptedError:
            continue


def _not_dumpable() -> None:
    """Nothing in the jail may open this process's descriptors or memory through /proc."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass


class Supervisor:
    def __init__(self, spec: dict) -> None:
        self.argv = [str(a) for a in spec["argv"]]
        self.env = {str(k): str(v) for k, v in spec["env"].items()}
        self.cwd = str(spec["cwd"])
        #: [[child fd, inherited fd or -1 for /dev/null], ...]
        self.fds = [(int(c), int(s)) for c, s in spec["fds"]]
        self.limits = {k: int(v) for k, v in spec.get("limits", {}).items()}
        self.nice = int(spec.get("nice", 0))
        self.generation = 0
        self.child = 0
        # Only the first process of a pid namespace may end "every other process": outside one,
        # kill(-1) would reach every process of this user on the machine.
        self.own_namespace = bool(spec.get("pid_namespace")) and os.getpid() == 1
        #: Where the file operations and the fingerprint work (the session's workspace).
        self.root = str(spec.get("root") or self.cwd)
        #: Background processes: pid -> handle (each is the leader of its own session).
        self.background: dict = {}
        #: Sessions of every background process started, alive or not: a restart spares them.
        self.background_sessions: set = set()
        #: File helpers this process forked (reaped without a report).
        self.helpers: set = set()
        self.fifo_dir = ""
        self.control: socket.socket | None = None  # the control socket, once main() has it
        self._files_module: Any = None

    def spawn(self) -> None:
        """Start the program; report ``started``, or ``failed`` when it could not be executed."""
        self.generation += 1
        report_r, report_w = os.pipe()  # closed on exec: EOF alone means the exec worked
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                os.close(report_r)
                report_w = _fcntl_dupfd(report_w, cloexec=True)  # out of the way of dup2
                self._become_program(report_w)
            except BaseException as exc:  # noqa: BLE001 - report anything, then exit
                try:
                    os.write(report_w, f"cannot start {self.argv[0]}: {exc}".encode()[:4000])
                finally:
                    os._exit(127)
        os.close(report_w)
        failure = b""
        while True:
            try:
                chunk = os.read(report_r, 4096)
            except InterruptedError:
                continue
            if not chunk:
                break
            failure += chunk
        os.close(report_r)
        if failure:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            _emit(
                f"failed {self.generation} " + failure.decode("utf-8", "replace").replace("\n", " ")
            )
            return
        self.child = pid
        _emit(f"started {self.generation} {pid}")

    def _limit_self(self) -> None:
        """The session's limits, niceness and OOM preference, on the calling (child) process."""
        import resource

        for name, value in self.limits.items():
            limit = getattr(resource, _LIMITS[name])
            _, hard = resource.getrlimit(limit)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(limit, (value, value))
        if self.nice:
            os.nice(self.nice)
        try:  # under memory pressure, the kernel ends jailed processes before the worker
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass

    def _become_program(self, report: int) -> None:
        os.setsid()
        self._limit_self()
        devnull = os.open(os.devnull, os.O_RDWR)
        staged = [(child, _fcntl_dupfd(devnull if src < 0 else src)) for child, src in self.fds]
        for child, fd in staged:
            os.dup2(fd, child)
        keep = {child for child, _ in staged}
        for fd in range(3, max(keep | {2}) + 1):
            if fd not in keep:
                _close(fd)
        os.closerange(max(keep | {2}) + 1, report)
        os.closerange(report + 1, 65536)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        for name in _IGNORED:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(self.cwd)
        os.execvpe(self.argv[0], self.argv, self.env)

    def end_all(self) -> None:
        """End every process of the jail (background ones too), then reap the program."""
        if self.own_namespace:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            self._end_group()
            for pid in list(self.background):
                _kill_quietly(-pid, signal.SIGKILL)
        self._reap_program()

    def end_program(self) -> None:
        """End the program and everything it started, except background processes' sessions
        (and the supervisor's own: its helpers), then reap the program."""
        if self.own_namespace:
            keep = {os.getsid(0)} | self.background_sessions
            # A killed process shows until it has exited, which can take a while (freeing much
            # memory, or a loaded machine): wait for it, and end everything only when processes
            # outlive the bound (something forks faster than it is ended).
            deadline = time.monotonic() + END_PROGRAM_SECONDS
            while True:
                victims = [pid for pid, sid in _processes() if pid != 1 and sid not in keep]
                if not victims:
                    break
                if time.monotonic() > deadline:
                    _kill_quietly(-1, signal.SIGKILL)
                    break
                for pid in victims:
                    _kill_quietly(pid, signal.SIGKILL)
                time.sleep(0.001)
        else:
            self._end_group()
        self._reap_program()

    def _end_group(self) -> None:
        if self.child:
            for target in (-self.child, self.child):
                _kill_quietly(target, signal.SIGKILL)

    def _reap_program(self) -> None:
        if self.child:
            try:
                os.waitpid(self.child, 0)
            except ChildProcessError:
                pass
            self.child = 0
        self.reap()

    def reap(self) -> None:
        """Collect every child that ended (as pid 1, orphans are ours too); report the program."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            if pid == self.child:
                _emit(f"exited {self.generation} {code}")
                self.child = 0
            elif pid in self.background:
                self.tell({"event": "exited", "handle": self.background.pop(pid), "status": code})
            else:
                self.helpers.discard(pid)

    def drain_input(self) -> None:
        """Drop what the last program left unread on its standard input."""
        for child, src in self.fds:
            if child == 0 and src >= 0:
                os.set_blocking(src, False)
                try:
                    while os.read(src, 65536):
                        pass
                except (BlockingIOError, OSError):
                    pass
                os.set_blocking(src, True)

    def handle(self, line: str) -> bool:
        """Run one command; False when the supervisor should exit."""
        word, _, arg = line.strip().partition(" ")
        if word == "restart":
            self.end_program()
            self.drain_input()
            self.spawn()
        elif word == "signal" and self.child:
            try:
                os.kill(self.child, int(arg))
            except ProcessLookupError:
                pass
        elif word == "stop":
            return False
        return True

    # --- the control channel -------------------------------------------------------------------

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
            import sys

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
        import gzip  # noqa: F401 - once here, not in every helper: they inherit it
        import tarfile  # noqa: F401

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


def _read_spec() -> tuple[dict, bytes]:
    data = b""
    while b"\n" not in data:
        chunk = os.read(0, 65536)
        if not chunk:
            raise SystemExit(0)
        data += chunk
    line, _, rest = data.partition(b"\n")
    return json.loads(line), rest


def main() -> None:
    _not_dumpable()
    for name in _IGNORED:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    spec, pending = _read_spec()
    sup = Supervisor(spec)
    try:
        if spec.get("make_cwd"):
            os.makedirs(sup.cwd, exist_ok=True)
        os.chdir(sup.cwd)
    except OSError as exc:
        _emit(f"error cwd {sup.cwd!r} does not exist inside the sandbox ({exc.strerror})")
        raise SystemExit(1) from None
    control = spec.get("control_fd")
    if control is not None:
        sup.control = socket.socket(fileno=int(control))
    watched = [0, wake_r] + ([sup.control] if sup.control is not None else [])
    sup.spawn()
    try:
        while True:
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            sup.reap()
            if sup.control is not None and sup.control in ready and not sup.on_control():
                watched.remove(sup.control)  # the worker closed it: requests are over
            if 0 not in ready:
                continue
            try:
                chunk = os.read(0, 65536)
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN):
                    continue
                chunk = b""
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                if not sup.handle(line.decode("utf-8", "replace")):
                    return
    finally:
        sup.end_all()
        sup.remove_fifos()


if __name__ == "__main__":
    main()
