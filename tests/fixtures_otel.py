"""OpenTelemetry for the tests: the process's tracer provider, set once, writing to one in-memory exporter."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hub import tracing

_exporter = InMemorySpanExporter()


def spans_exporter() -> InMemorySpanExporter:
    """The exporter every span of this process goes to (OpenTelemetry lets a process set its provider once)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
        tracing.look_again()  # a test that ran before may have found none within the last second
    return _exporter
