"""The ``mcp`` backend's configuration: AgentFlow's server files and task directories.

What a session's config names on the worker (``config_dir``, ``task_dir``, ``initial_workspace``,
``preprocess``) is checked against the worker's roots (:func:`host_path`); a server file's
placeholders are filled in (:func:`fill_placeholders`) and its command resolved to the servers
``scripts/setup.sh`` installed (``npx <package>``, AgentFlow's ``${local_servers_paths}/<name>``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from backends.workspace import Workspace
from contract.extras import require

#: Where ``scripts/setup.sh`` installs the MCP servers (``node_modules/``, npm's) and the ``mcp``
#: package for Python servers (``python/``, for the system's ``python3``: ``PYTHONPATH``). Under
#: ``/usr``, because that is what a jail sees of the host (read-only): no host directory is
#: added to a jail's view. ``DURABLE_SESSIONS_MCP_DIR`` names another (with ``isolation: none``).
SERVERS_DIR = Path(
    os.environ.get("DURABLE_SESSIONS_MCP_DIR", "/usr/local/lib/durable-sessions-mcp")
)
#: AgentFlow's placeholders in a server file (its MCP client supports these three; any other
#: ``${...}`` is refused, as there).
PLACEHOLDERS = ("agent_workspace", "local_servers_paths", "task_dir")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
#: The worker's setting: directories (``os.pathsep``-separated) under which a session's config
#: may name ``config_dir``, ``task_dir``, ``initial_workspace`` and ``preprocess``; unset: none.
ROOTS_ENV = "DURABLE_SESSIONS_MCP_ROOTS"
#: Largest initial workspace (or task directory) the worker copies in (bytes).
MAX_INITIAL_BYTES = 64 * 1024 * 1024
#: Where a jailed session sees its task directory (``${task_dir}``): a copy in the jail's /tmp.
JAIL_TASK_DIR = "/tmp/task"


def fill_placeholders(text: Any, values: Mapping[str, str]) -> str:
    """``text`` with AgentFlow's placeholders replaced; ValueError naming any other, as
    AgentFlow's client refuses them (an empty ``${task_dir}`` when the session has none)."""
    text = str(text)
    unknown = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - set(PLACEHOLDERS))
    if unknown:
        raise ValueError(
            f"unsupported placeholder(s) {', '.join(unknown)} in {text!r}: "
            f"only {', '.join(PLACEHOLDERS)}"
        )
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)


def local_server(path: str) -> str:
    """AgentFlow's ``${local_servers_paths}/<name>/...`` (its Toolathlon layout: one folder per
    server) for a server setup.sh installed from npm as ``@modelcontextprotocol/server-<name>``:
    that package's file. Any other path is kept."""
    base = str(SERVERS_DIR).rstrip("/") + "/"
    if not path.startswith(base) or os.path.exists(path):
        return path
    name, _, rest = path[len(base) :].partition("/")
    package = SERVERS_DIR / "node_modules" / "@modelcontextprotocol" / f"server-{name}"
    return str(package / rest) if package.is_dir() else path


def server_definitions(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The enabled servers' definitions, from ``server_configs`` and ``config_dir``."""
    enabled: Any = next(
        (config[k] for k in ("enabled_servers", "enabled_mcp_servers", "servers") if k in config),
        [],
    )
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
        found[name] = dict(params)
        bound = definition.get("client_session_timeout_seconds")  # AgentFlow's, per request
        if bound is not None:
            found[name]["client_session_timeout_seconds"] = bound
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


def resolve_npx(argv: list[str]) -> list[str]:
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


def walk_task(source: Path, *, skip: str | None = None) -> Iterator[tuple[str, bytes, bool]]:
    """Each regular file below ``source`` (less the folder ``skip``): its relative path, its
    bytes and whether it is executable; none reached through a linked directory outside it.
    ValueError past :data:`MAX_INITIAL_BYTES` in all."""
    total = 0
    inside = os.path.realpath(source).rstrip("/") + "/"
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if not os.path.realpath(path).startswith(inside):  # through a linked directory
            continue
        relative = path.relative_to(source).as_posix()
        if skip is not None and relative.split("/", 1)[0] == skip:
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_INITIAL_BYTES:
            raise ValueError(f"{source} holds over {MAX_INITIAL_BYTES} bytes to copy")
        yield relative, data, os.access(path, os.X_OK)


async def copy_initial(workspace: Workspace, config: dict[str, Any]) -> None:
    """AgentFlow's initial workspace: the files of a worker directory, copied in."""
    source = task_path(config, "initial_workspace", "initial_workspace")
    if source is None:
        return
    for relative, data, executable in walk_task(source):
        request = {
            "op": "write",
            "path": relative,
            "offset": None,
            "executable": executable,
            "make_dirs": True,
        }
        await workspace.op(request, data)


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


def task_path(config: dict[str, Any], key: str, default: str) -> Path | None:
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
