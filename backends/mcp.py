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
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from backends.base import Backend, tool
from backends.host import ToolCallError
from backends.jail import JailedProcess
from backends.jail_settings import jail_python
from backends.process_config import ProcessConfig, process_config
from backends.workspace import Workspace, WorkspaceTools, changed_snapshot
from contract import ErrorCode
from contract.extras import require

if TYPE_CHECKING:
    from backends.mcp_link import ServerLink, ServerSpec

log = logging.getLogger(__name__)

#: Where ``scripts/setup.sh`` installs the MCP servers (``node_modules/``, npm's) and the ``mcp``
#: package for Python servers (``python/``, for the system's ``python3``: ``PYTHONPATH``). Under
#: ``/usr``, because that is what a jail sees of the host (read-only): no host directory is
#: added to a jail's view. ``DURABLE_SESSIONS_MCP_DIR`` names another (with ``isolation: none``).
SERVERS_DIR = Path(
    os.environ.get("DURABLE_SESSIONS_MCP_DIR", "/usr/local/lib/durable-sessions-mcp")
)
_PLACEHOLDER = re.compile(r"\$\{(agent_workspace|local_servers_paths)\}")
#: The worker's setting: directories (``os.pathsep``-separated) under which a session's config
#: may name ``config_dir``, ``task_dir``, ``initial_workspace`` and ``preprocess``; unset: none.
ROOTS_ENV = "DURABLE_SESSIONS_MCP_ROOTS"
#: The sessions' default ``memory_mb`` (RLIMIT_AS per process): Node needs about 2 GiB of it.
DEFAULT_MEMORY_MB = 4096
#: Longest preprocess step.
PREPROCESS_TIMEOUT = 300.0
#: Largest initial workspace the worker copies in (bytes).
MAX_INITIAL_BYTES = 64 * 1024 * 1024


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
            await info["workspace"].baseline()
            await _copy_initial(info["workspace"], config)
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
        await self._ensure_jail(session_info)
        link = _link(session_info, server)
        if not link.alive:  # it ended (or crashed): a new one, on the same workspace
            async with session_info["lock"]:
                if not _link(session_info, server).alive:
                    await _start_link(session_info, server)
                link = _link(session_info, server)
        if tool not in {t["name"] for t in link.tools}:
            known = ", ".join(t["name"] for t in link.tools) or "none"
            raise ToolCallError(
                ErrorCode.UNKNOWN_TOOL, f"server {server!r} has no tool {tool!r} (it has: {known})"
            )
        try:
            result = await link.call(tool, arguments or {}, timeout)
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
    link = _links().ServerLink(server_spec(name, info["servers"][name], info["settings"], box))
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


def server_definitions(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The enabled servers' definitions, from ``server_configs`` and ``config_dir``."""
    enabled = config.get("enabled_servers", config.get("servers", []))
    if isinstance(enabled, str):
        enabled = [enabled]
    if not isinstance(enabled, list) or not all(isinstance(n, str) for n in enabled):
        raise ValueError("enabled_servers must be a list of server names")
    if not enabled:
        raise ValueError("enabled_servers names no MCP server: the session would have no tools")
    inline = config.get("server_configs") or {}
    if not isinstance(inline, dict):
        raise ValueError("server_configs must be an object of server names to definitions")
    found: dict[str, dict[str, Any]] = {}
    for name in enabled:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"server name {name!r}: use letters, digits, '_' and '-'")
        definition = inline.get(name) or _from_dir(config.get("config_dir"), name)
        if definition is None:
            raise ValueError(
                f"no definition of MCP server {name!r} (in server_configs or config_dir)"
            )
        kind = definition.get("type", "stdio")
        if kind != "stdio":
            raise ValueError(f"MCP server {name!r} is of type {kind!r}; only stdio is supported")
        params = definition.get("params", definition)
        if not isinstance(params, dict) or not isinstance(params.get("command"), str):
            raise ValueError(f"MCP server {name!r} needs params.command")
        found[name] = params
    return found


def _from_dir(directory: Any, name: str) -> dict[str, Any] | None:
    if not directory:
        return None
    for suffix in (".yaml", ".yml", ".json"):
        path = host_path(directory, "config_dir") / f"{name}{suffix}"
        if path.is_file():
            text = path.read_text()
            if suffix == ".json":
                loaded = json.loads(text)
            else:
                yaml = require("yaml", "the mcp backend's YAML server files")  # [mcp]: pyyaml
                loaded = yaml.safe_load(text)
            if not isinstance(loaded, dict):
                raise ValueError(f"{path} holds no server definition")
            return loaded
    return None


def server_spec(
    name: str, params: dict[str, Any], settings: ProcessConfig, box: JailedProcess
) -> ServerSpec:
    """The argv, environment and cwd of a server, placeholders replaced, ``npx`` resolved."""
    values = {"agent_workspace": box.root, "local_servers_paths": str(SERVERS_DIR)}

    def fill(text: Any) -> str:
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], str(text))

    argv = [fill(params["command"]), *(fill(a) for a in params.get("args") or [])]
    argv = _resolve_npx(argv)
    env = {**settings.env, **{str(k): fill(v) for k, v in (params.get("env") or {}).items()}}
    cwd = fill(params.get("cwd") or box.root)
    stderr = f"/tmp/.mcp-{name}.stderr" if settings.jail.isolated else os.devnull
    spec: ServerSpec = _links().ServerSpec(name, argv, env, cwd, stderr)
    return spec


def _resolve_npx(argv: list[str]) -> list[str]:
    """``npx [-y] <package>[@version] ARGS`` -> ``node <its bin> ARGS`` when installed here."""
    if os.path.basename(argv[0]) != "npx":
        return argv
    rest = [a for a in argv[1:] if a not in ("-y", "--yes")]
    if not rest:
        return argv
    package = rest[0]
    bare = package if not package[1:].count("@") else package[: package.rindex("@")]
    manifest = SERVERS_DIR / "node_modules" / bare / "package.json"
    if not manifest.is_file():
        return argv
    bins = json.loads(manifest.read_text()).get("bin")
    entry = bins if isinstance(bins, str) else next(iter((bins or {}).values()), None)
    if not entry:
        return argv
    return ["node", str(manifest.parent / entry), *rest[1:]]


async def _copy_initial(workspace: Workspace, config: dict[str, Any]) -> None:
    """AgentFlow's initial workspace: the files of a worker directory, copied in."""
    source = _task_path(config, "initial_workspace", "initial_workspace")
    if source is None:
        return
    total = 0
    inside = os.path.realpath(source).rstrip("/") + "/"
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if not os.path.realpath(path).startswith(inside):  # through a linked directory
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_INITIAL_BYTES:
            raise ValueError(f"the initial workspace {source} is over {MAX_INITIAL_BYTES} bytes")
        request = {
            "op": "write",
            "path": path.relative_to(source).as_posix(),
            "offset": None,
            "executable": os.access(path, os.X_OK),
            "make_dirs": True,
        }
        await workspace.op(request, data)


async def _preprocess(info: dict[str, Any], config: dict[str, Any]) -> None:
    """AgentFlow's preprocess step: its ``main.py`` run in the jail, in the workspace."""
    script = _task_path(config, "preprocess", "preprocess/main.py")
    if script is None or not script.is_file():
        return
    box: JailedProcess = info["box"]
    python, _ = jail_python(None)
    launch = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    argv = [python, "-c", script.read_text(), "--agent_workspace", box.root]
    argv += ["--launch_time", launch]
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


def host_path(value: Any, key: str) -> Path:
    """A directory or file of the worker that a session's config names, checked to lie under one
    of the operator's roots (:data:`ROOTS_ENV`): a client never reads the worker's other files."""
    roots = [r for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r]
    if not isinstance(value, str) or not os.path.isabs(value):
        raise ValueError(f"{key} must be an absolute path on the worker, not {value!r}")
    path = os.path.realpath(value)
    for root in roots:
        real = os.path.realpath(root)
        if path == real or path.startswith(real.rstrip("/") + "/"):
            return Path(path)
    allowed = ", ".join(roots) or "none: the worker's $" + ROOTS_ENV + " is not set"
    raise ValueError(f"{key} {value} lies outside the worker's MCP roots ({allowed})")


def _task_path(config: dict[str, Any], key: str, default: str) -> Path | None:
    task_dir = config.get("task_dir")
    named = config.get(key)
    if named is None and task_dir is None:
        return None
    base = host_path(task_dir, "task_dir") if task_dir else None
    if base is None:
        path = host_path(named, key)
    else:
        path = Path(os.path.realpath(base / str(named or default)))
        host_path(str(path), key)
    if named is not None and not path.exists():
        raise ValueError(f"{key} {path} does not exist on the worker")
    return path if path.exists() else None
