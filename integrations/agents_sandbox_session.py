"""The session side of the ``durable-sessions`` provider for the OpenAI Agents SDK's sandboxes.

A :class:`DurableSessionsSandboxSession` is one durable bash session (workflow
``<sandbox_id>:bash``) seen through the SDK's ``BaseSandboxSession``: ``exec`` is ``bash:run``,
``read`` / ``write`` are ``bash:read_file`` / ``bash:write_file``, and the workspace archive
(``persist_workspace`` / ``hydrate_workspace``) is a tar made and unpacked inside the session's
jail. Everything goes through the public client (``client.Sandbox``); see
``integrations/agents_sandbox.py`` for the client and docs/openai-agents-sandbox.md.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import posixpath
import shlex
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from contract.extras import missing_extra

try:
    from agents.sandbox.errors import (
        ExecTimeoutError,
        ExecTransportError,
        WorkspaceArchiveReadError,
        WorkspaceArchiveWriteError,
        WorkspaceReadNotFoundError,
        WorkspaceStartError,
        WorkspaceWriteTypeError,
    )
    from agents.sandbox.session.base_sandbox_session import BaseSandboxSession
    from agents.sandbox.session.sandbox_session_state import SandboxSessionState
    from agents.sandbox.types import ExecResult, User
    from pydantic import Field
    from temporalio import activity
except ModuleNotFoundError as exc:  # the [agents] extra
    raise (missing_extra(exc, "integrations.agents_sandbox_session") or exc) from None

from client import Sandbox
from contract import ErrorCode
from integrations.activities import request_id_for_activity
from integrations.agents_sandbox_pty import ShellPty

#: The bash session's workspace (docs/tools.md#files); the manifest's root must lie in it.
WORKSPACE = "/workspace"
#: Where the provider's archives wait inside the workspace (left out of every archive).
SCRATCH = ".durable-sessions-agents"
#: Statuses whose session still answers calls (a paused one resumes on its next call).
LIVE = {"starting", "active", "idle", "paused"}
#: Shells whose ``<shell> -c SCRIPT`` the persistent shell runs as SCRIPT itself.
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}
#: The longest request id a session takes (longer ones are hashed).
MAX_REQUEST_ID = 200
#: A call's parameters are at most 1 MiB: 640 KiB of data is ~853 KiB of base64.
WRITE_CHUNK = 640 * 1024
READ_CHUNK = 2 * 1024 * 1024


class DurableSessionsSandboxSessionState(SandboxSessionState):
    """The SDK's session state plus the durable session it names (and how to make it again)."""

    type: Literal["durable_sessions"] = "durable_sessions"
    #: The durable session is the workflow ``<sandbox_id>:<resource_type>``.
    sandbox_id: str
    resource_type: Literal["bash"] = "bash"
    workflow_id: str
    #: How a replacement is made when the session has ended: the options it was made with.
    user_id: str | None = None
    agent_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds: float | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    task_queue: str | None = None
    persistent_shell: bool = True
    keep_on_delete: bool = False
    exec_timeout: float = 30.0
    pty: bool = False
    #: How many times resume had to make a replacement (the session had ended).
    replacements: int = 0


class DurableSessionsSandboxSession(ShellPty, BaseSandboxSession):
    """The SDK's session over one durable bash session (through ``client.Sandbox``)."""

    state: DurableSessionsSandboxSessionState

    def __init__(
        self, *, state: DurableSessionsSandboxSessionState, sandbox: Sandbox, reattached: bool
    ) -> None:
        self.state = state
        self.sandbox = sandbox
        #: True when this object found the durable session alive (resume): its workspace, cwd
        #: and exported variables are the live ones, newer than any snapshot of them.
        self.reattached = reattached
        self._set_start_state_preserved(reattached)
        #: One command at a time: the session has one shell (parallel tool calls queue here).
        self._shell_lock = asyncio.Lock()
        #: Per activity (its request id): the attempt seen last and the calls it has made.
        self._activity_calls: dict[str, tuple[int, int]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def _ensure_backend_started(self) -> None:
        # create() and resume() made or found the session. One that expires later answers 4010
        # to every call (the Sandbox's rule: its state is gone), raised as ExecTransportError;
        # resume the state again for a replacement.
        if self.state.manifest.users or self.state.manifest.groups:
            raise WorkspaceStartError(
                path=Path(self.state.manifest.root),
                message="durable sessions run as the jail's one user: manifest users and "
                "groups are not supported",
            )

    async def _can_reuse_restorable_snapshot_workspace(self) -> bool:
        # A live durable session is the newest state there is (a snapshot is taken from it);
        # restoring an older snapshot over it would undo the work done since.
        return self.reattached

    async def running(self) -> bool:
        view = await self.sandbox.describe_session(self.state.resource_type)
        return view is not None and str(view.get("status")) in LIVE

    async def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """One tool call on the session. Inside an activity (the SDK's Temporal integration runs
        each sandbox operation as one) its request id is the activity's plus the call's place in
        it, so an attempt retried after a lost worker gets the first attempt's answers and its
        commands run once."""
        tool = f"{self.state.resource_type}:{action}"
        return await self.sandbox.execute(tool, params, request_id=self._request_id())

    async def run_command(self, params: dict[str, Any]) -> dict[str, Any]:
        """``bash:run`` (hold the shell lock). A command left running interactively by a process
        that is gone (nobody here started it: ``pty=True`` and a dead agent, a lost worker) is
        interrupted so that this one runs; without that the shell would refuse commands until
        the old one's timeout."""
        answer = await self.call("run", params)
        left_over = answer.get("code") == ErrorCode.INVALID_INPUT and "still running" in str(
            answer.get("message")
        )
        if not left_over or self._pty_process is not None:
            return answer
        await self.call("interrupt", {"grace": 2})
        return await self.call("run", params)

    def _request_id(self) -> str | None:
        if not activity.in_activity():
            return None
        info = activity.info()
        base = request_id_for_activity(info)
        attempt, count = self._activity_calls.get(base, (info.attempt, 0))
        if attempt != info.attempt:  # a new attempt makes the same calls again, from the first
            count = 0
        self._activity_calls[base] = (info.attempt, count + 1)
        while len(self._activity_calls) > 64:  # the oldest activities are done with
            del self._activity_calls[next(iter(self._activity_calls))]
        request_id = f"{base}/{count}"
        if len(request_id) <= MAX_REQUEST_ID:
            return request_id
        return "act-" + hashlib.sha256(request_id.encode()).hexdigest()

    # --- exec --------------------------------------------------------------------------------

    def _prepare_exec_command(
        self, *command: str | Path, shell: bool | list[str], user: str | User | None
    ) -> list[str]:
        if user:
            raise ExecTransportError(
                command=[str(c) for c in command],
                message="durable sessions run every command as the jail's one user (no sudo)",
                retryable=False,
            )
        return super()._prepare_exec_command(*command, shell=shell, user=None)

    def shell_script(self, parts: list[str]) -> str:
        """What the session's bash runs for this argv: ``sh -c SCRIPT`` is SCRIPT itself when
        the shell is persistent (so ``cd`` and ``export`` carry over), else the argv quoted."""
        if (
            self.state.persistent_shell
            and len(parts) == 3
            and parts[0] in SHELLS
            and parts[1] in ("-c", "-lc")
        ):
            return parts[2]
        return shlex.join(parts)

    async def _exec_internal(
        self, *command: str | Path, timeout: float | None = None
    ) -> ExecResult:
        parts = [str(c) for c in command]
        bound = timeout if timeout and timeout > 0 else self.state.exec_timeout
        params = {"command": self.shell_script(parts), "timeout": bound}
        async with self._shell_lock:
            answer = await self.run_command(params)
        code, data = answer.get("code"), answer.get("data") or {}
        if code == ErrorCode.TIMEOUT:
            raise ExecTimeoutError(command=parts, timeout_s=bound, context=_context(answer))
        if code != ErrorCode.SUCCESS:
            raise ExecTransportError(
                command=parts, context=_context(answer), message=_message("exec", answer)
            )
        return ExecResult(
            stdout=str(data.get("stdout") or "").encode(),
            stderr=str(data.get("stderr") or "").encode(),
            exit_code=int(data.get("return_code") or 0),
        )

    # --- files -------------------------------------------------------------------------------

    def _workspace_path(self, path: Path | str, *, for_write: bool) -> str:
        normalized = self.normalize_path(path, for_write=for_write).as_posix()
        if not _inside(normalized, WORKSPACE):
            raise (WorkspaceArchiveWriteError if for_write else WorkspaceArchiveReadError)(
                path=Path(normalized),
                context={"reason": f"durable sessions read and write files under {WORKSPACE}"},
            )
        return normalized

    async def read(self, path: Path | str, *, user: str | User | None = None) -> io.IOBase:
        target = self._workspace_path(path, for_write=False)
        return io.BytesIO(await self.read_bytes(target))

    async def read_bytes(self, target: str) -> bytes:
        """A whole workspace file, in ``read_file`` chunks (base64)."""
        out, offset = bytearray(), 0
        while True:
            params = {"path": target, "offset": offset, "length": READ_CHUNK, "encoding": "base64"}
            answer = await self.call("read_file", params)
            if answer.get("code") == ErrorCode.NOT_FOUND:
                raise WorkspaceReadNotFoundError(path=Path(target), context=_context(answer))
            if answer.get("code") != ErrorCode.SUCCESS:
                raise WorkspaceArchiveReadError(path=Path(target), context=_context(answer))
            data = answer["data"]
            out += base64.b64decode(data["content"])
            offset = int(data["next_offset"])
            if data["eof"]:
                return bytes(out)

    async def write(
        self, path: Path | str, data: io.IOBase, *, user: str | User | None = None
    ) -> None:
        target = self._workspace_path(path, for_write=True)
        payload = data.read()
        if isinstance(payload, str):
            payload = payload.encode()
        if not isinstance(payload, bytes | bytearray):
            raise WorkspaceWriteTypeError(path=Path(target), actual_type=type(payload).__name__)
        await self.write_bytes(target, bytes(payload))

    async def write_bytes(self, target: str, payload: bytes) -> None:
        """A whole workspace file, in ``write_file`` chunks (one call, atomic, up to 640 KiB)."""
        offset = 0
        while True:
            chunk = payload[offset : offset + WRITE_CHUNK]
            more = offset + len(chunk) < len(payload)
            params: dict[str, Any] = {
                "path": target,
                "content": base64.b64encode(chunk).decode("ascii"),
                "encoding": "base64",
            }
            if more or offset:  # chunked: each at its offset, the snapshot waits for the last
                params.update(offset=offset, more=more)
            answer = await self.call("write_file", params)
            if answer.get("code") != ErrorCode.SUCCESS:
                raise WorkspaceArchiveWriteError(path=Path(target), context=_context(answer))
            offset += len(chunk)
            if not more:
                return

    # --- the workspace archive ---------------------------------------------------------------

    async def persist_workspace(self) -> io.IOBase:
        """The workspace as a tar of workspace-relative members (``./...``), packed in the jail
        into a scratch file the workspace tools then read."""
        root = self._workspace_path(self.state.manifest.root, for_write=False)
        name = f"{SCRATCH}/persist-{uuid.uuid4().hex[:12]}.tar"
        skipped = [f"./{SCRATCH}"] + [f"./{p.as_posix()}" for p in self._skip_paths()]
        excludes = " ".join(f"--exclude={shlex.quote(p)}" for p in skipped)
        script = (
            f"mkdir -p {shlex.quote(f'{WORKSPACE}/{SCRATCH}')} && "
            f"tar -cf {shlex.quote(f'{WORKSPACE}/{name}')} {excludes} -C {shlex.quote(root)} ."
        )
        await self._checked(script, root, WorkspaceArchiveReadError)
        try:
            archive = await self.read_bytes(f"{WORKSPACE}/{name}")
        finally:
            await self._exec_internal("sh", "-c", f"{_drop(f'{WORKSPACE}/{name}')}; true")
        return io.BytesIO(archive)

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        """Unpack a tar made by :meth:`persist_workspace` (or any portable one) under the root."""
        root = self._workspace_path(self.state.manifest.root, for_write=True)
        payload = data.read()
        if not isinstance(payload, bytes | bytearray):
            raise WorkspaceWriteTypeError(path=Path(root), actual_type=type(payload).__name__)
        name = f"{WORKSPACE}/{SCRATCH}/hydrate-{uuid.uuid4().hex[:12]}.tar"
        await self.write_bytes(name, bytes(payload))
        # GNU tar refuses members that climb out with '..' and strips a leading '/'; the jail
        # confines what is left to the session's own filesystem.
        script = (
            f"mkdir -p {shlex.quote(root)} && tar -xf {shlex.quote(name)} -C {shlex.quote(root)}"
            f"; status=$?; {_drop(name)}; exit $status"
        )
        await self._checked(f"( {script} )", root, WorkspaceArchiveWriteError)

    def _skip_paths(self) -> list[PurePosixPath]:
        return [
            PurePosixPath(p.as_posix()) for p in sorted(self._persist_workspace_skip_relpaths())
        ]

    async def _checked(
        self,
        script: str,
        root: str,
        error: type[WorkspaceArchiveReadError] | type[WorkspaceArchiveWriteError],
    ) -> None:
        result = await self._exec_internal("sh", "-c", script)
        if not result.ok():
            context = {"stderr": result.stderr.decode(errors="replace")[-2000:]}
            raise error(path=Path(root), context=context)


def _drop(scratch_file: str) -> str:
    """A script that removes a scratch file, then its directory when nothing else is in it."""
    scratch_dir = shlex.quote(f"{WORKSPACE}/{SCRATCH}")
    return f"rm -f -- {shlex.quote(scratch_file)}; rmdir {scratch_dir} 2>/dev/null"


def _inside(path: str, root: str) -> bool:
    path = posixpath.normpath(path)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _context(answer: dict[str, Any]) -> dict[str, object]:
    meta = answer.get("meta") or {}
    return {"code": answer.get("code"), "message": answer.get("message"), **_ids(meta)}


def _ids(meta: dict[str, Any]) -> dict[str, object]:
    return {k: meta[k] for k in ("session_id", "request_id") if meta.get(k)}


def _message(op: str, answer: dict[str, Any]) -> str:
    return f"durable session {op} failed ({answer.get('code')}): {answer.get('message')}"
