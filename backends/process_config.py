"""The config every process-backed backend (bash, code) reads the same way."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024


@dataclass(frozen=True)
class ProcessConfig:
    cwd: str
    env: dict[str, str]
    max_output_bytes: int


def process_config(config: dict[str, Any], **env_defaults: str) -> ProcessConfig:
    """``cwd`` (must exist; default the worker's), ``env`` (over the worker's environment and
    ``env_defaults``) and ``max_output_bytes`` (per stream, default 256 KiB)."""
    cwd = str(config.get("cwd") or os.getcwd())
    if not os.path.isdir(cwd):
        raise ValueError(f"cwd {cwd!r} is not a directory")
    env = {
        **os.environ,
        **env_defaults,
        **{k: str(v) for k, v in config.get("env", {}).items()},
    }
    limit = int(config.get("max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES))
    return ProcessConfig(cwd, env, limit)
