"""Trace context (hub/tracing.py): X-Ray's header as W3C's, the trace context each source finds in its records,
an invocation as a span that continues it (OpenTelemetry's SDK, its in-memory exporter), and nothing of
OpenTelemetry imported or changed without the `otel` extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from connectors.kafka.events import trace_headers as kafka_trace
from connectors.rabbitmq.events import header_value
from connectors.rabbitmq.events import trace_headers as rabbitmq_trace
from connectors.sqs.events import trace_context as sqs_trace
from hub import redact, tracing
from hub.config import FunctionConfig
from hub.functions import Function
from hub.records import Record
from tests.fixtures_otel import spans_exporter
from tests.helpers import ROOT

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACEPARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = spans_exporter()
    found.clear()
    yield found
    found.clear()


def test_an_xray_header_becomes_a_traceparent() -> None:
    assert tracing.xray_to_traceparent(XRAY) == TRACEPARENT
    unsampled = "Parent=53995c3f42cd8ad8; Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0;Lineage=a:1"
    assert tracing.xray_to_traceparent(unsampled) == TRACEPARENT[:-2] + "00"
    assert tracing.xray_to_traceparent("Root=1-5759e988-bd862e3fe1be46a994272793") is None  # no parent segment
    assert tracing.xray_to_traceparent("Root=1-5759e988-bd86;Parent=53995c3f42cd8ad8") is None
    assert tracing.xray_to_traceparent("garbage") is None


def test_each_source_finds_the_trace_context_of_its_records() -> None:
    sqs = {"attributes": {"AWSTraceHeader": XRAY}, "messageAttributes": {}}
    assert sqs_trace(sqs) == {"traceparent": TRACEPARENT}
    sqs_w3c = {
        "attributes": {},
        "messageAttributes": {
            "traceparent": {"stringValue": TRACEPARENT, "dataType": "String"},
            "tracestate": {"stringValue": "vendor=1", "dataType": "String"},
        },
    }
    assert sqs_trace(sqs_w3c) == {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    assert sqs_trace({"attributes": {}, "messageAttributes": {}}) is None
    signed = [b - 256 if b > 127 else b for b in TRACEPARENT.encode()]  # Kafka headers as AWS renders them
    kafka = Record("t-0", 1, {"headers": [{"other": [1, 2]}, {"traceparent": signed}]})
    assert kafka_trace(kafka) == {"traceparent": TRACEPARENT}
    assert kafka_trace(Record("t-0", 2, {"headers": []})) is None
    rabbit = {"basicProperties": {"headers": {"traceparent": header_value(TRACEPARENT), "retries": 0}}}
    assert rabbitmq_trace(rabbit) == {"traceparent": TRACEPARENT}
    assert rabbitmq_trace({"basicProperties": {"headers": {}}}) is None


async def invoke(handler: str, trace_contexts: list[dict[str, str]], event: Any = None) -> Any:
    fn = Function(
        "traced",
        FunctionConfig(runtime="in-process", handler=handler, timeout=5),
        region="eu-west-1",
        account_id="000000000000",
    )
    await fn.start()
    try:
        return await fn.invoke(event or {}, mapping="orders", records=2, attempt=3, trace=trace_contexts)
    finally:
        await fn.close()


async def test_an_invocation_is_a_span_that_continues_the_records_trace(exporter: InMemorySpanExporter) -> None:
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    result = await invoke("functions.testing.sleeps_async", [{"traceparent": TRACEPARENT}, {"traceparent": other}])
    [span] = exporter.get_finished_spans()
    assert span.name == "traced" and span.kind == SpanKind.CONSUMER
    assert span.context.trace_id == int("5759e988bd862e3fe1be46a994272793", 16)
    assert span.parent is not None and span.parent.span_id == int("53995c3f42cd8ad8", 16)
    assert [link.context.trace_id for link in span.links] == [
        int("5759e988bd862e3fe1be46a994272793", 16),
        int("0af7651916cd43dd8448eb211c80319c", 16),
    ]
    assert span.attributes is not None
    assert span.attributes["faas.invocation_id"] == result.request_id
    assert span.attributes["eventhub.mapping"] == "orders" and span.attributes["eventhub.attempt"] == 3
    assert span.attributes["messaging.batch.message_count"] == 2
    assert span.status.status_code == StatusCode.UNSET


async def test_a_failed_invocation_is_an_error_span_with_its_masked_message(exporter: InMemorySpanExporter) -> None:
    redact.remember(["s3cret-token"])
    await invoke("functions.testing.raises", [], {"message": "bad s3cret-token"})
    [span] = exporter.get_finished_spans()
    assert span.parent is None  # no trace context: a new trace
    assert span.status.status_code == StatusCode.ERROR
    assert "s3cret-token" not in (span.status.description or "")


def test_without_the_extra_nothing_of_opentelemetry_is_imported(tmp_path: Any) -> None:
    """A process where OpenTelemetry cannot be imported invokes as before and never tries to."""
    script = textwrap.dedent(
        """
        import asyncio, importlib.machinery, sys

        found = importlib.machinery.PathFinder.find_spec

        def not_installed(name, path=None, target=None):  # as if the extra were not installed
            return None if name.split(".")[0] == "opentelemetry" else found(name, path, target)

        importlib.machinery.PathFinder.find_spec = not_installed
        from hub.config import FunctionConfig
        from hub.functions import Function
        from hub import tracing

        async def main():
            fn = Function("f", FunctionConfig(runtime="in-process", handler="functions.testing.sleeps_async"),
                          region="us-east-1", account_id="000000000000")
            await fn.start()
            result = await fn.invoke({"seconds": 0}, mapping="m", trace=[{"traceparent": "x"}])
            await fn.close()
            print(result.ok, tracing.enabled(), any(m.startswith("opentelemetry") for m in sys.modules))

        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False"]


def test_no_span_is_made_until_the_process_has_a_tracer_provider() -> None:
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from hub import tracing

        import time

        before = tracing.enabled()
        trace.set_tracer_provider(TracerProvider())
        deadline = time.monotonic() + 10  # a process without one looks again every RECHECK_SECONDS
        while not tracing.enabled() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(before, tracing.enabled())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
