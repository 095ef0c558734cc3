"""The ``mcp`` backend: the stdio MCP servers a session's config enables, in its jail and workspace.

Config (AgentFlow's MCP backend's shape):

- ``enabled_servers``: the names of the servers this session runs (``servers`` is read too).
- ``config_dir``: a directory of the worker holding ``<name>.yaml`` (or ``.yml``/``.json``)
  server files, AgentFlow's ``type: stdio`` with ``params: {command, args, env, cwd}``;
  ``server_configs``: the same files inline, ``{name: {...}}`` (they win over ``config_dir``).
- Paths of the worker (``config_dir``, ``task_dir`` and the two below) must lie under one of the
  directories the worker's ``$DURABLE_SESSIONS_MCP_ROOTS`` names (:func:`host_path`).
- ``task_dir``: a directory of the worker holding the task: ``initial_workspace/`` (copied into
  the workspace before the servers start) and ``preprocess/main.py`` (run in the jail after the
  copy, as ``python main.py --agent_workspace /workspace --launch_time <UTC>``);
  ``initial_workspace`` and ``preprocess`` name other places (relative to ``task_dir``).
- ``env``, ``network`` and the jail's other keys as for ``bash`` (:mod:`backends.process_config`).

Placeholders in ``command``, ``args``, ``env`` and ``cwd``: ``${agent_workspace}`` (the
session's workspace as its programs see it), ``${local_servers_paths}`` (the servers
``scripts/setup.sh`` installed: :data:`SERVERS_DIR`). ``npx [-y] <package> ARGS`` runs that
package from :data:`SERVERS_DIR` when it is installed there (a jail has no network by default).

Tools: ``mcp:list_tools`` and ``mcp:call {server, tool, arguments}``; a server's tool is named
``mcp:<server>.<tool>`` in the listing. Durability: the workspace is the snapshot; a restored
instance unpacks it and starts its servers again, so what they keep in files survives a lost
worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from backends.base import Backend, tool
from backends.host import ToolCallError
from backends.jail import JailedProcess
from backends.jail_settings import jail_python
from backends.mcp_config import (
    JAIL_TASK_DIR,
    ROOTS_ENV,
    SERVERS_DIR,
    copy_initial,
    fill_placeholders,
    host_path,
    local_server,
    resolve_npx,
    server_definitions,
    task_path,
    walk_task,
)
from backends.process_config import ProcessConfig, process_config
from backends.workspace import Workspace, WorkspaceTools, changed_snapshot
from contract import ErrorCode, ToolSpec
from contract.extras import require

__all__ = ["ROOTS_ENV", "SERVERS_DIR", "McpBackend", "host_path", "server_definitions"]

if TYPE_CHECKING:
    from backends.mcp_link import ServerLink, ServerSpec

log = logging.getLogger(__name__)

#: The sessions' default ``memory_mb`` (RLIMIT_AS per process): Node needs about 2 GiB of it.
DEFAULT_MEMORY_MB = 4096
#: Longest preprocess step.
PREPROCESS_TIMEOUT = 300.0


class McpBackend(WorkspaceTools, Backend):
    """Stdio MCP servers per session, in the session's jail; see the module's docstring."""

    name = "mcp"

    async def initialize(self, worker_id: str, config: dict[str, Any]) -> dict[str, Any]:
        # Node's V8 reserves more address space than the jail's default RLIMIT_AS (1 GiB).
        settings = process_config({"memory_mb": DEFAULT_MEMORY_MB, **config})
        servers = server_definitions(config)
        info: dict[str, Any] = {"config": config, "settings": settings, "servers": servers}
        info["lock"] = asyncio.Lock()
        info["links"] = {}
        info["workspace"] = Workspace(
            settings.workspace_snapshot_bytes, lambda: self._ensure_jail(info)
        )
        box = await self._new_jail(info)
        try:
            await info["workspace"].attach(box)
            await _place_task(info)
            await info["workspace"].baseline()
            if config.get("copy_initial_workspace", True) is not False:  # AgentFlow's flag
                await copy_initial(info["workspace"], config)
            if config.get("run_preprocess", True) is not False:
                await _preprocess(info, config)
            await self._start_servers(info)
        except BaseException:
            await self.cleanup(worker_id, info)
            raise
        return info

    async def _new_jail(self, info: dict[str, Any]) -> JailedProcess:
        settings: ProcessConfig = info["settings"]
        box = JailedProcess(settings.jail, env=settings.env, cwd=settings.cwd, fds=["null"])
        await box.start(["sleep", "infinity"])
        box.on_event = lambda event: _on_event(info, event)
        info["box"] = box
        return box

    async def _ensure_jail(self, info: dict[str, Any]) -> JailedProcess:
        box: JailedProcess = info["box"]
        if box.alive:
            return box
        async with info["lock"]:
            if info["box"].alive:
                return info["box"]
            await _stop_links(info)
            with contextlib.suppress(Exception):
                await box.close()
            box = await self._new_jail(info)
            await info["workspace"].attach(box)  # the last snapshot's files come back
            await _place_task(info)
            await self._start_servers(info)
            return box

    async def _start_servers(self, info: dict[str, Any]) -> None:
        for name in info["servers"]:
            await _start_link(info, name)

    async def cleanup(self, worker_id: str, session_info: dict[str, Any]) -> None:
        await _stop_links(session_info)
        box = session_info.get("box")
        if box is not None:
            await box.close()

    async def snapshot(self, session_info: dict[str, Any]) -> dict[str, Any] | None:
        """The workspace (``workspace``), when it changed since the last snapshot; else None."""
        return await changed_snapshot(session_info)

    async def restore(self, session_info: dict[str, Any], snapshot: dict[str, Any]) -> None:
        """The snapshot's workspace in place of the fresh one (whose initial files and
        preprocess output the session may have changed or removed since), then the servers
        started again: they read it afresh."""
        entry = snapshot.get("workspace")
        box: JailedProcess = session_info["box"]
        async with session_info["lock"]:
            await _stop_links(session_info)
            if entry and box.settings.isolated:
                emptied = await _links().output_of(
                    box, ["find", box.root, "-mindepth", "1", "-delete"], timeout=60
                )
                if emptied:  # find says nothing when it removed everything
                    log.warning("emptying the workspace before its restore: %s", emptied)
            try:
                await session_info["workspace"].restore(entry)
            except Exception:
                log.exception("restoring the workspace failed")
            await self._start_servers(session_info)

    def describe(self, session_info: dict[str, Any]) -> dict[str, Any]:
        links: dict[str, ServerLink] = session_info["links"]
        return {
            "servers": {
                name: {"pid": link.pid, "alive": link.alive, "tools": len(link.tools)}
                for name, link in links.items()
            },
            "workspace": session_info["workspace"].root,
        }

    @tool("mcp:list_tools", idempotent=True)
    async def list_tools(
        self, server: str | None = None, *, session_info: dict[str, Any]
    ) -> dict[str, Any]:
        """The tools of the session's MCP servers (or of one): name (mcp:<server>.<tool>),
        server, tool, description and input_schema, as each server listed them."""
        await self._ensure_jail(session_info)
        links: dict[str, ServerLink] = session_info["links"]
        if server is not None:
            _link(session_info, server)
        tools = [
            {**t, "name": f"mcp:{name}.{t['name']}", "server": name, "tool": t["name"]}
            for name, link in links.items()
            if server is None or name == server
            for t in link.tools
        ]
        return {"servers": sorted(links), "tools": tools}

    @tool("mcp:call")
    async def call(
        self,
        tool: str,
        server: str = "",
        arguments: dict[str, Any] | None = None,
        timeout: Annotated[float, Field(gt=0, le=86400)] = 60,
        *,
        session_info: dict[str, Any],
    ) -> dict[str, Any]:
        """Call a tool of one of the session's MCP servers: server and tool, or tool alone as
        "<server>.<tool>" (or its listed name "mcp:<server>.<tool>"). Answers the server's
        result as MCP sends it (content, structuredContent, isError). A server that ended is
        started again first."""
        if not server and "." in tool:  # "<server>.<tool>", or its listed "mcp:<server>.<tool>"
            server, tool = tool.removeprefix("mcp:").split(".", 1)
        return await _call_server(self, session_info, server, tool, arguments or {}, timeout)

    def instance_tools(self, session_info: dict[str, Any]) -> list[ToolSpec]:
        """Each server's tools as it listed them, named ``mcp:<server>.<tool>`` (AgentFlow's
        names), with the input schema the server gave: the session lists, checks and calls
        them as its own."""
        links: dict[str, ServerLink] = session_info.get("links", {})
        return [
            ToolSpec(
                name=f"mcp:{name}.{t['name']}",
                resource_type=self.name,
                description=t.get("description") or "",
                params_schema=t.get("input_schema") or {"type": "object", "properties": {}},
            )
            for name, link in sorted(links.items())
            for t in link.tools
        ]

    async def call_instance_tool(
        self, name: str, params: dict[str, Any], session_info: dict[str, Any]
    ) -> dict[str, Any]:
        """``mcp:<server>.<tool>``: that server's tool with ``params`` as its arguments, bound
        by the server file's ``client_session_timeout_seconds`` (60) and the call's own
        ``timeout`` (the worker cancels the call there)."""
        server, tool = name.removeprefix("mcp:").split(".", 1)
        definition = session_info["servers"].get(server, {})
        timeout = float(definition.get("client_session_timeout_seconds") or 60)
        return await _call_server(self, session_info, server, tool, params, timeout)


async def _call_server(
    backend: McpBackend,
    info: dict[str, Any],
    server: str,
    tool: str,
    arguments: dict[str, Any],
    timeout: float,
) -> dict[str, Any]:
    """One call to a server's tool, its server started again first when it ended."""
    await backend._ensure_jail(info)
    link = _link(info, server)
    if not link.alive:  # it ended (or crashed): a new one, on the same workspace
        async with info["lock"]:
            if not _link(info, server).alive:
                await _start_link(info, server)
            link = _link(info, server)
    if tool not in {t["name"] for t in link.tools}:
        known = ", ".join(t["name"] for t in link.tools) or "none"
        raise ToolCallError(
            ErrorCode.UNKNOWN_TOOL, f"server {server!r} has no tool {tool!r} (it has: {known})"
        )
    try:
        result = await link.call(tool, arguments, timeout)
    except TimeoutError:
        raise ToolCallError(
            ErrorCode.TIMEOUT, f"{server}.{tool} did not answer within {timeout:g}s"
        ) from None
    except Exception as exc:
        if link.alive:
            raise
        raise ToolCallError(
            ErrorCode.TOOL_ERROR,
            f"MCP server {server!r} ended during the call ({exc}); the next call to it "
            "starts it again",
        ) from None
    return {"server": server, "tool": tool, **result}


def _links() -> ModuleType:
    """:mod:`backends.mcp_link`, imported where used: it needs the ``mcp`` extra."""
    return require("backends.mcp_link", "the mcp backend")


async def _start_link(info: dict[str, Any], name: str) -> None:
    """Start (or start again) one server in the session's jail."""
    old: ServerLink | None = info["links"].pop(name, None)
    if old is not None:
        await old.stop()
    box: JailedProcess = info["box"]
    link = _links().ServerLink(server_spec(name, info["servers"][name], info, box))
    info["links"][name] = link
    await link.start(box)


def _link(info: dict[str, Any], server: str) -> ServerLink:
    links: dict[str, ServerLink] = info["links"]
    try:
        return links[server]
    except KeyError:
        known = ", ".join(sorted(links)) or "none"
        raise ToolCallError(
            ErrorCode.NOT_FOUND, f"no MCP server {server!r} in this session (it has: {known})"
        ) from None


def _on_event(info: dict[str, Any], event: dict[str, Any]) -> None:
    if event.get("event") != "exited":
        return
    handle = str(event.get("handle", ""))
    if handle.startswith("mcp:"):
        link = info["links"].get(handle[4:])
        if link is not None:
            link.exited = True
    waiter = info.get("preprocess_waiter")
    if handle == "preprocess" and waiter is not None and not waiter.done():
        waiter.set_result(int(event.get("status", -1)))


async def _stop_links(info: dict[str, Any]) -> None:
    links: dict[str, ServerLink] = info.get("links", {})
    for link in links.values():
        await link.stop()
    links.clear()


def server_spec(
    name: str, params: dict[str, Any], info: dict[str, Any], box: JailedProcess
) -> ServerSpec:
    """The argv, environment and cwd of a server: AgentFlow's placeholders filled in,
    ``npx`` and AgentFlow's ``${local_servers_paths}/<name>`` resolved to what setup.sh
    installed."""
    settings: ProcessConfig = info["settings"]
    values = {
        "agent_workspace": box.root,
        "local_servers_paths": str(SERVERS_DIR),
        "task_dir": info.get("task_dir", ""),
    }

    def fill(text: Any) -> str:
        return local_server(fill_placeholders(text, values))

    argv = [fill(params["command"]), *(fill(a) for a in params.get("args") or [])]
    argv = resolve_npx(argv)
    env = {**settings.env, **{str(k): fill(v) for k, v in (params.get("env") or {}).items()}}
    cwd = fill(params.get("cwd") or box.root)
    stderr = f"/tmp/.mcp-{name}.stderr" if settings.jail.isolated else os.devnull
    spec: ServerSpec = _links().ServerSpec(name, argv, env, cwd, stderr)
    return spec


async def _place_task(info: dict[str, Any]) -> None:
    """AgentFlow's ``${task_dir}`` as the session's programs see it: the worker's directory
    itself without isolation; in a jail, which sees no host directory, a copy of it (less its
    ``initial_workspace/``, copied into the workspace instead) at :data:`JAIL_TASK_DIR`, made
    through the workspace and moved out of it before the workspace's baseline, so no snapshot
    carries it. Made again for a new jail."""
    task_dir = info["config"].get("task_dir")
    box: JailedProcess = info["box"]
    if not task_dir:
        info["task_dir"] = ""
        return
    base = host_path(task_dir, "task_dir")
    if not box.settings.isolated:
        info["task_dir"] = str(base)
        return
    staging = f".task-{uuid.uuid4().hex[:12]}"
    for relative, data, executable in walk_task(base, skip="initial_workspace"):
        request = {
            "op": "write",
            "path": f"{staging}/{relative}",
            "offset": None,
            "executable": executable,
            "make_dirs": True,
        }
        await info["workspace"].op(request, data)
    script = f'rm -rf {JAIL_TASK_DIR} && mkdir -p "$0" && mv "$0" {JAIL_TASK_DIR}'
    moved = await _links().output_of(box, ["sh", "-c", script, f"{box.root}/{staging}"])
    if moved:
        raise RuntimeError(f"copying the task directory into the jail failed: {moved.strip()}")
    info["task_dir"] = JAIL_TASK_DIR


async def _preprocess(info: dict[str, Any], config: dict[str, Any]) -> None:
    """AgentFlow's preprocess step: its ``main.py`` run in the jail, in the workspace."""
    script = task_path(config, "preprocess", "preprocess/main.py")
    if script is None or not script.is_file():
        return
    box: JailedProcess = info["box"]
    python, _ = jail_python(None)
    # AgentFlow's: the config's launch_time (its first two words), else now.
    given = " ".join(str(config.get("launch_time") or "").split()[:2])
    launch = given or datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    # The script by its path in the task directory the jail sees, so it finds its neighbours
    # there; one named outside the task directory runs from its text.
    base = host_path(config["task_dir"], "task_dir") if config.get("task_dir") else None
    inside = base is not None and script.is_relative_to(base) and info.get("task_dir")
    if inside and base is not None:
        run = [f"{info['task_dir']}/{script.relative_to(base).as_posix()}"]
    else:
        run = ["-c", script.read_text()]
    argv = [python, *run, "--agent_workspace", box.root, "--launch_time", launch]
    waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    info["preprocess_waiter"] = waiter  # before the spawn: its end may come at once
    output = await _links().output_of(
        box,
        argv,
        env=info["settings"].env,
        cwd=box.root,
        handle="preprocess",
        timeout=PREPROCESS_TIMEOUT,
    )
    if output is None:
        raise RuntimeError(f"the preprocess step {script} ran past {PREPROCESS_TIMEOUT:g}s")
    status = await asyncio.wait_for(waiter, 30)
    if status != 0:
        raise RuntimeError(f"the preprocess step {script} failed ({status}): {output.strip()}")
