"""The config every process-backed backend (bash, code) reads the same way."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from backends.jail_settings import JailSettings, base_env, default_cwd, settings_from

DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
#: ``max_output_bytes``: per stream and call; there is no "unlimited".
MAX_OUTPUT_RANGE = (1, 16 * 1024 * 1024)
#: ``workspace_snapshot_mb``: file content a workspace snapshot takes at most (0: none); the
#: default is the default workspace's size (backends.jail_settings), so all of it is kept.
DEFAULT_WORKSPACE_SNAPSHOT_MB = 1024
WORKSPACE_SNAPSHOT_RANGE = (0, 65536)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ProcessConfig:
    cwd: str
    env: dict[str, str]
    max_output_bytes: int
    jail: JailSettings
    #: File content a workspace snapshot takes at most, bytes (0: the workspace is not kept).
    workspace_snapshot_bytes: int = 0


def process_config(config: dict[str, Any], **env_defaults: str) -> ProcessConfig:
    """Read and check a session's config; a ValueError names the key and its allowed values.

    ``cwd``: the start directory as the session sees it (default ``/workspace`` in a jail,
    created when it lies under ``/workspace`` or ``/tmp``). ``env``: the only variables the
    program gets besides PATH, HOME, TMPDIR, LANG and ``env_defaults``; never the worker's.
    ``max_output_bytes``: per stream, 1..16 MiB, default 256 KiB. ``workspace_snapshot_mb``:
    how much file content the workspace's snapshot keeps, 0..65536, default 1024 in a jail and 0
    (off) with ``isolation: none``, whose files stay on the host. The jail keys are read by
    :func:`backends.jail_settings.settings_from`.
    """
    jail = settings_from(config)
    cwd = config.get("cwd") or default_cwd(jail)
    if not isinstance(cwd, str) or not os.path.isabs(cwd):
        raise ValueError(f"cwd {cwd!r} must be an absolute path")
    if not jail.isolated and not os.path.isdir(cwd):
        raise ValueError(f"cwd {cwd!r} is not a directory")
    extra = config.get("env", {})
    if not isinstance(extra, dict):
        raise ValueError("env must be an object of variable names to values")
    for name, value in extra.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError(f"env name {name!r} is not a valid variable name")
        if "\0" in str(value):
            raise ValueError(f"env {name} holds a NUL character")
    env = {**base_env(jail), **env_defaults, **{k: str(v) for k, v in extra.items()}}
    limit = config.get("max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES)
    low, high = MAX_OUTPUT_RANGE
    if isinstance(limit, bool) or not isinstance(limit, int) or not low <= limit <= high:
        raise ValueError(f"max_output_bytes {limit!r} must be an integer in {low}..{high}")
    keep = config.get(
        "workspace_snapshot_mb", DEFAULT_WORKSPACE_SNAPSHOT_MB if jail.isolated else 0
    )
    low, high = WORKSPACE_SNAPSHOT_RANGE
    if isinstance(keep, bool) or not isinstance(keep, int) or not low <= keep <= high:
        raise ValueError(f"workspace_snapshot_mb {keep!r} must be an integer in {low}..{high}")
    return ProcessConfig(cwd, env, limit, jail, keep * 1024 * 1024)
