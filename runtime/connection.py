"""One way to connect, for the client, the worker and the CLI."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from runtime.plugin import SessionsPlugin
from runtime.telemetry import configure_tracing

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
#: What to do when no server answers: said by every "cannot reach Temporal" message.
START_SERVER_HINT = (
    "start one with `./run.sh` (a dev server with its UI and a worker), or point "
    "TEMPORAL_ADDRESS (or --address) at a running server"
)


class TemporalUnreachable(ConnectionError):
    """No Temporal server answered at the address tried.

    Attributes:
        address: The address tried (``host:port``).
        namespace: The namespace asked for.
    """

    def __init__(self, address: str, namespace: str, reason: str) -> None:
        self.address = address
        self.namespace = namespace
        super().__init__(
            f"cannot reach Temporal at {address} (namespace {namespace!r}): {reason}; "
            f"{START_SERVER_HINT}"
        )


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
    made from this client inherit it.

    Tracing is configured from the environment first (``runtime.telemetry.configure_tracing``):
    the plugin propagates traces when a provider records them.

    Raises:
        TemporalUnreachable: no server answered at the address (the message says which, and how
            to start one).
    """
    configure_tracing()
    options = connect_options(address, namespace)
    try:
        return await Client.connect(**options, plugins=[SessionsPlugin()], runtime=runtime)
    except RuntimeError as exc:
        if not str(exc).startswith("Failed client connect"):
            raise
        # Let the SDK's native thread finish calling back into Python before the caller goes
        # on (and perhaps exits): a process that exits at once after a failed connect aborts
        # now and then in interpreter finalization ("Fatal Python error: PyGILState_Release").
        await asyncio.sleep(0.2)
        raise TemporalUnreachable(
            options["target_host"], options["namespace"], _reason(str(exc))
        ) from None


def _reason(message: str) -> str:
    """The cause of a failed connect in a few words, not the transport's whole debug chain."""
    found = re.search(r'message: "([^"]+)"', message) or re.search(
        r'ConnectError\("([^"]+)"', message
    )
    return found.group(1).lower() if found else message.removeprefix("Failed client connect: ")


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default
