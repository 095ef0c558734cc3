"""One way to connect, for the client, the worker and the CLI."""

from __future__ import annotations

import os
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from runtime.plugin import SessionsPlugin

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


def connect_options(address: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """Connection settings: explicit arguments, then Temporal's own environment variables
    (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*) and config file,
    then the embedded server's defaults."""
    options: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    options.setdefault("target_host", DEFAULT_ADDRESS)
    options.setdefault("namespace", DEFAULT_NAMESPACE)
    if address:
        options["target_host"] = address
    if namespace:
        options["namespace"] = namespace
    return options


async def connect(
    address: str | None = None, namespace: str | None = None, *, runtime: Runtime | None = None
) -> Client:
    """Connect with the plugin every part of the product uses (runtime/plugin.py: pydantic data
    converter, large payloads stored outside history, encryption, trace propagation); workers
    made from this client inherit it."""
    return await Client.connect(
        **connect_options(address, namespace), plugins=[SessionsPlugin()], runtime=runtime
    )


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default
