"""Plumbing shared by the client, the worker and the entry points: the connection, the Temporal
plugin (data converter, payload encryption, external storage, tracing), telemetry and the
embedded dev server. It sits above workflows and below the client: it never imports activities,
backends, the client or an entry point."""
