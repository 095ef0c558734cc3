"""Traces and metrics on a real server: one trace per execute, and a worker's exported metrics."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from client import Sandbox
from runtime.connection import connect
from runtime.telemetry import recording
from tests.conftest import new_sandbox_id
from tests.devserver import free_port
from tests.processes import WorkerProcess, serve_once
from worker import run_worker

SPANS = InMemorySpanExporter()


def _install_provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)  # once per process: only this module sets one


async def test_one_trace_runs_from_the_client_call_to_the_backend_tool(address: str) -> None:
    _install_provider()
    client = await connect(address)  # carries the tracing interceptor; its workers inherit it
    queue = f"traced-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    # A real worker with the real bash backend, in this process so its spans are collected here.
    worker = asyncio.create_task(run_worker(client, task_queue=queue, backends=["bash"], stop=stop))
    try:
        sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
        await sandbox.create_session("bash")
        SPANS.clear()
        result = await sandbox.execute("bash:run", {"command": "echo traced"})
        assert result["code"] == 0
        await sandbox.destroy_session("bash")
    finally:
        stop.set()
        await worker

    spans = SPANS.get_finished_spans()
    root = _one(spans, "execute bash:run")
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["session.result_code"] == 0
    assert root.attributes["session.id"] == result["meta"]["session_id"]
    traced = [s for s in spans if s.context.trace_id == root.context.trace_id]
    # client call -> update -> (workflow handler, and the activity it starts) -> backend tool
    edges = [
        ("execute bash:run", "StartWorkflowUpdate:execute"),
        ("StartWorkflowUpdate:execute", "HandleUpdate:execute"),
        ("StartWorkflowUpdate:execute", "StartActivity:session.call_tool"),
        ("StartActivity:session.call_tool", "RunActivity:session.call_tool"),
        ("RunActivity:session.call_tool", "tool bash:run"),
    ]
    for parent_name, child_name in edges:
        parent, child = _one(traced, parent_name), _one(traced, child_name)
        assert child.parent is not None and child.parent.span_id == parent.context.span_id, (
            f"{child_name} must be a child of {parent_name}"
        )
    tool = _one(traced, "tool bash:run")
    assert tool.attributes is not None
    assert tool.attributes["session.id"] == result["meta"]["session_id"]
    assert tool.attributes["session.result_code"] == 0
    assert tool.attributes["session.workflow_id"] == f"{sandbox.sandbox_id}:bash"


def _one(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in spans]}"
    return found[0]


def test_tracing_is_on_only_where_a_provider_records_spans() -> None:
    # SessionsPlugin adds its tracing interceptor by this: without a provider nothing is recorded.
    assert recording(TracerProvider())
    assert not recording(trace.NoOpTracerProvider())
    assert not recording(trace.ProxyTracerProvider())


async def test_the_main_command_prints_its_spans_when_asked(tmp_path) -> None:
    """``OTEL_TRACES_EXPORTER=console ./run.sh``: the demo's calls are printed as spans, from the
    client's call through the worker's activity to the tool (docs/operations.md, Traces)."""
    env = {"OTEL_TRACES_EXPORTER": "console"}
    code, text = await serve_once(tmp_path, http_port=free_port(), env=env)
    assert code == 0, text
    for name in ("execute bash:run", "RunActivity:session.call_tool", "tool bash:run"):
        assert f'"name": "{name}"' in text, name


async def test_worker_exports_sdk_and_session_metrics(client: Client, address: str) -> None:
    port = free_port()
    queue = f"metered-{uuid.uuid4().hex[:8]}"
    proc = await WorkerProcess.start(
        address,
        env={"SESSIONS_PROMETHEUS_BIND": f"127.0.0.1:{port}"},
        args=["--task-queue", queue],
    )
    try:
        sandbox = Sandbox(new_sandbox_id(), client=client, task_queue=queue)
        await sandbox.create_session("testkit")
        assert (await sandbox.execute("testkit:pid"))["code"] == 0
        assert (await sandbox.execute("testkit:boom"))["code"] == 5005
        text = ""
        for _ in range(40):  # metrics are exported on an interval
            text = await asyncio.to_thread(_scrape, f"http://127.0.0.1:{port}/metrics")
            if 'code="5005"' in text and "sessions_execute_latency" in text:
                break
            await asyncio.sleep(0.25)
        live = _samples(text, "sessions_live_instances")
        assert any('resource_type="testkit"' in k and v == 1 for k, v in live.items()), live
        errors = _samples(text, "sessions_execute_errors")
        assert any('code="5005"' in k and v == 1 for k, v in errors.items()), errors
        assert _samples(text, "sessions_execute_latency_count"), "execute latency histogram"
        assert _samples(text, "sessions_tool_duration_count"), "tool duration histogram"
        # Calls are local activities here; the SDK's workflow-task and local-activity metrics.
        assert _samples(text, "temporal_workflow_task_execution_latency_count") and _samples(
            text, "temporal_local_activity_execution_latency_count"
        ), "the SDK's own metrics come out of the same exporter"
        await sandbox.destroy_session("testkit")
    finally:
        await proc.stop()


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _samples(text: str, name: str) -> dict[str, float]:
    """Prometheus text lines of one metric: labels -> value."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            found[labels] = float(value)
    return found
