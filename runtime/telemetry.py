"""Traces and metrics, configured from the standard environment variables.

Tracing uses the SDK's TracingInterceptor (spans from the client call through the workflow to the
activity, visible at once, also for sessions that live for hours) plus our own spans around each
execute and each tool. Metrics go through the Temporal runtime, so the SDK's own metrics and ours
(``workflow.metric_meter()``, ``activity.metric_meter()``) leave by the same exporter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import temporalio.worker
from opentelemetry import trace
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor

# Private to the SDK, which is pinned (pyproject.toml); tests/test_telemetry.py guards the chain.
from temporalio.contrib.opentelemetry._context import attached_context
from temporalio.runtime import OpenTelemetryConfig, PrometheusConfig, Runtime, TelemetryConfig

TRACER_NAME = "durable_sessions"
#: Where a worker serves Prometheus metrics, e.g. ``127.0.0.1:9464``.
PROMETHEUS_ENV = "SESSIONS_PROMETHEUS_BIND"

_configured = False


class SessionTracingInterceptor(TracingInterceptor):
    """The SDK's tracing, with each update handled in its caller's trace.

    The SDK parents every handler of a workflow to the trace that started it and only links the
    caller's span: for a session that lives for hours, every execute would land in the trace of
    its creation. Here an update's handler, the activities it starts and the backend's tool span
    all belong to the trace of the call that sent it: one trace per execute.
    """

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the span-making extern function
        return _RequestScopedWorkflowInbound


class _RequestScopedWorkflowInbound(TracingWorkflowInboundInterceptor):
    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        header = input.headers.get(self.header_key)
        if header is None:
            return await super().handle_update_handler(input)
        carrier = self.payload_converter.from_payloads([header])[0]
        context = self._set_on_context(self.text_map_propagator.extract(carrier))
        with attached_context(context):
            self._completed_span(f"HandleUpdate:{input.update}", kind=trace.SpanKind.SERVER)
            return await self.next.handle_update_handler(input)


def recording(provider: trace.TracerProvider | None = None) -> bool:
    """True when spans made now would be recorded: a tracer provider other than the API's
    default (a proxy until one is set, or a no-op one) is installed."""
    provider = provider if provider is not None else trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def tracing_interceptor() -> TracingInterceptor:
    """Propagates the caller's trace through updates, workflow handlers and activities."""
    return SessionTracingInterceptor()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def span(name: str, attributes: Mapping[str, Any]) -> Iterator[trace.Span]:
    """A span with attributes (None values left out), child of whatever span is current."""
    clean = {k: v for k, v in attributes.items() if v is not None}
    with tracer().start_as_current_span(name, attributes=clean) as current:
        yield current


def configure_tracing(environ: Mapping[str, str] = os.environ) -> None:
    """Install a tracer provider when ``OTEL_TRACES_EXPORTER`` asks for one (``console`` or
    ``otlp``; the OTLP exporter reads ``OTEL_EXPORTER_OTLP_*`` itself), unless the application
    installed its own. Without it, spans cost nothing: the default provider does not record."""
    global _configured
    kind = environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if _configured or kind in ("", "none") or recording():
        return
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise RuntimeError(
                "OTEL_TRACES_EXPORTER=otlp needs the package opentelemetry-exporter-otlp-proto-http"
            ) from exc
        exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r}: use console, otlp or none")
    name = environ.get("OTEL_SERVICE_NAME", "durable-sessions")
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


def flush_tracing(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered, before a process leaves without finalization
    (``os._exit``, which skips the provider's own flush at exit)."""
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush(timeout_millis)


def metrics_runtime(environ: Mapping[str, str] = os.environ) -> Runtime | None:
    """A Temporal runtime exporting metrics, when asked: Prometheus on ``SESSIONS_PROMETHEUS_BIND``,
    or OTLP to ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    bind = environ.get(PROMETHEUS_ENV)
    otlp = environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if bind:
        metrics: PrometheusConfig | OpenTelemetryConfig = PrometheusConfig(bind_address=bind)
    elif otlp:
        metrics = OpenTelemetryConfig(url=otlp)
    else:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=metrics))
