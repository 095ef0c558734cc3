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
- ``manifest``: the workspace's manifest (:func:`jail_archive.op_manifest`: hashes only the
  files that changed since the last one)
- ``files``: fork a helper that runs one :mod:`jail_files` operation and answers on the pipe
  sent along

Those requests are answered by :mod:`jail_requests` (a mixin of ``Supervisor``, with the process
and descriptor helpers), loaded by path at the start from beside this file.

As pid 1 of a pid namespace, ``kill(-1, SIGKILL)`` ends every other process in the jail,
``setsid`` and double-forked daemons included, and no process in the jail can signal it.
A ``restart`` ends every process except the sessions of background processes and of the
supervisor itself (its helpers): the foreground's daemons end, background processes live on.
Outside a pid namespace (``isolation: none``) it ends the program's process group only.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

#: Seconds a timed-out command's processes get to exit before everything in the jail ends.
END_PROGRAM_SECONDS = 5.0
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


def _load(name: str) -> Any:
    """A module handed into the jail beside this one, loaded by path (the jail has no packages;
    not importlib.util, which costs milliseconds at every jail's start)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    module = type(os)(name)
    module.__file__ = path
    sys.modules[name] = module
    with open(path, "rb") as f:
        exec(compile(f.read(), path, "exec"), module.__dict__)
    return module


_requests = _load("jail_requests")
_IGNORED = _requests._IGNORED
_kill_quietly = _requests._kill_quietly
_processes = _requests._processes
_fcntl_dupfd = _requests._fcntl_dupfd
_close = _requests._close
_Requests: Any = _requests.Requests


class Supervisor(_Requests):
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
    # poll, not select: the control descriptor keeps the worker's number, which a busy worker
    # (hundreds of sessions) has past select's limit of 1024.
    poller = select.poll()
    for fd in [0, wake_r] + ([sup.control.fileno()] if sup.control is not None else []):
        poller.register(fd, select.POLLIN)
    sup.spawn()
    try:
        while True:
            try:
                ready = {fd for fd, _ in poller.poll()}
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            sup.reap()
            control = sup.control
            if control is not None and control.fileno() in ready and not sup.on_control():
                poller.unregister(control.fileno())  # the worker closed it: requests are over
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
