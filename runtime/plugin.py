"""One Temporal plugin for everything that talks to the server: client, worker and Replayer.

    client = await Client.connect(address, plugins=[SessionsPlugin()])
    Worker(client, ...)                      # inherits the plugin from its client
    Replayer(workflows=[...], plugins=[SessionsPlugin()])

It sets the data converter (pydantic, large payloads stored outside history, encrypted when a key
is configured) and the tracing interceptor, so no part of the product wires them by hand and the
three cannot drift apart: a Replayer that decodes payloads differently from the worker that wrote
them would not replay. It also spares the SDK's payload passes the sandbox entries that cannot
change a payload (runtime/payload_visiting.py), and its workflows one cache of pydantic type
adapters (runtime/type_adapters.py).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from temporalio.client import ClientConfig
from temporalio.converter import PayloadCodec
from temporalio.plugin import SimplePlugin

from runtime import payload_visiting
from runtime.payload_store import data_converter, filesystem_drivers
from runtime.telemetry import recording, tracing_interceptor
from runtime.type_adapters import SharedAdaptersPayloadConverter

PLUGIN_NAME = "durable_sessions.SessionsPlugin"


class SessionsPlugin(SimplePlugin):
    """The data converter and the tracing interceptor every client, worker and Replayer uses.

    A ``temporalio.worker.Worker`` takes the plugins of its client, so a worker made from a client
    connected with this plugin needs nothing more; the client's tracing interceptor is shared with
    it (one instance, not two). The data converter replaces any the caller passes.
    """

    def __init__(
        self,
        *,
        codec: PayloadCodec | None | Literal["env"] = "env",
        payload_store: str | None = None,
        payload_threshold: int | None = None,
        tracing: bool | None = None,
    ) -> None:
        """Build the plugin.

        Args:
            codec: The payload codec; ``"env"`` (default) reads the keys from
                ``$DURABLE_SESSIONS_ENCRYPTION_KEYS`` (none: no encryption), None turns it off.
            payload_store: Where large payloads go (a folder, ``file://...`` or ``s3://bucket``);
                default ``$SESSIONS_PAYLOAD_STORE`` or the shared local folder.
            payload_threshold: Size in bytes from which a payload leaves history; default
                ``$SESSIONS_PAYLOAD_THRESHOLD`` or 256 KiB.
            tracing: Propagate the caller's trace through updates, handlers and activities.
                Default: when a tracer provider is installed (``configure_tracing``, or the
                application's own) before the plugin is made. Without one no span is recorded,
                and the interceptor would still cost a worker ~1 ms of CPU per call.
        """
        if tracing is None:
            tracing = recording()
        # A worker's payload passes skip what cannot change a payload (runtime/payload_visiting).
        payload_visiting.install()
        converter = data_converter(payload_store, threshold=payload_threshold, codec=codec)
        super().__init__(
            PLUGIN_NAME,
            # One cache of pydantic type adapters for every workflow (runtime/type_adapters.py).
            data_converter=dataclasses.replace(
                converter, payload_converter_class=SharedAdaptersPayloadConverter
            )
            if payload_visiting.enabled()
            else converter,
            interceptors=[tracing_interceptor()] if tracing else None,
        )

    def configure_client(self, config: ClientConfig) -> ClientConfig:
        """The client's data converter, and the payload folder told which server it stores
        for (so a worker sweeps only folders of its own server: runtime/payload_store.py)."""
        config = super().configure_client(config)
        server = config["service_client"].config.target_host
        for driver in filesystem_drivers(config["data_converter"]):
            driver.server = server
        return config
