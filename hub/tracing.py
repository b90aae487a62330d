"""Trace context: with the `otel` extra (`pip install 'eventhub[otel]'`), each invocation is an OpenTelemetry span.

The span continues the trace the records carry, where their source tells one (hub.source.TraceSource: SQS's
`AWSTraceHeader`, in X-Ray's format, converted here; a `traceparent` in Kafka's or RabbitMQ's headers, or in an
SQS message attribute): its parent is the first record's context, and every record's context (up to MAX_LINKS)
is a link, as OpenTelemetry's messaging conventions do for a batch. Its name is the function's, its kind CONSUMER
for streams and queues, and it is marked as an error with the function's masked error when the invocation fails.

Spans go to the process's tracer provider: set it up as for any Python program (`opentelemetry-instrument hub
run ...` with `opentelemetry-distro` and an exporter, or `trace.set_tracer_provider` in a program that embeds the
hub); until one is set no span is made (a process without one looks again every second). Without the extra,
nothing here imports OpenTelemetry and invocations are not touched; `OTEL_SDK_DISABLED=true` turns tracing off with
it installed.

Nothing of the records but their trace context is read, and nothing of the event or the result goes into a span.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from hub import redact
from hub.records import Record
from hub.runtimes import Result
from hub.source import TraceSource

MAX_LINKS = 32
"""Records of a batch whose trace contexts become links of the invocation's span (the first one is its parent)."""

INSTRUMENTATION = "eventhub"

_installed: bool | None = None
_provided = False
"""True once the process has a tracer provider: OpenTelemetry sets it once and never takes it back."""
_api: Any = None
_tracer: Any = None
_checked_at = -1.0
"""When (time.monotonic()) the process was last found without a tracer provider."""
RECHECK_SECONDS = 1.0
"""How often a process without a tracer provider looks again: spans start within this of one being set."""
_tells: dict[type, bool] = {}
"""Whether a source's class tells its records' trace context (a Protocol's isinstance is slow: once per class)."""


def enabled() -> bool:
    """Whether invocations are spans now: the OpenTelemetry API is installed, OTEL_SDK_DISABLED is not true, and
    the process has a tracer provider (without one every span would be a no-op: none is made, which spares the
    hot path). Whether it is installed is looked up once, and finding the package imports nothing of it."""
    global _installed, _api, _provided, _checked_at
    if _provided:
        return True
    now = time.monotonic()
    if 0 <= now - _checked_at < RECHECK_SECONDS:
        return False
    _checked_at = now
    if _installed is None:
        disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        _installed = not disabled and importlib.util.find_spec("opentelemetry") is not None and _has_trace_api()
        if _installed:
            from opentelemetry import trace

            _api = trace
    _provided = bool(_installed) and not isinstance(_api.get_tracer_provider(), _api.ProxyTracerProvider)
    return _provided


def look_again() -> None:
    """Make the next enabled() look for a tracer provider now (one was just set, by a program embedding the hub)."""
    global _checked_at
    _checked_at = -1.0


def _has_trace_api() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except ModuleNotFoundError:
        return False


def carriers(source: object, records: Sequence[Record]) -> list[Mapping[str, str]]:
    """The trace contexts of (up to MAX_LINKS + 1 of) `records`, in order, when tracing is on and the source tells
    them; [] otherwise."""
    kind = type(source)
    tells = _tells.get(kind)
    if tells is None:
        tells = _tells[kind] = isinstance(source, TraceSource)
    if not tells or not enabled():
        return []
    source = cast(TraceSource, source)
    found: list[Mapping[str, str]] = []
    for record in records:
        carrier = source.trace_context(record)
        if carrier:
            found.append(carrier)
            if len(found) > MAX_LINKS:
                break
    return found


@contextlib.contextmanager
def invocation(
    function: str, region: str, mapping: str, records: int, attempt: int, trace: Sequence[Mapping[str, str]]
) -> Iterator[Any]:
    """The span of one invocation, current while it runs (an in-process handler's own spans are its children)."""
    from opentelemetry import trace as api
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    global _tracer
    if _tracer is None:
        _tracer = api.get_tracer(INSTRUMENTATION)
    propagator = TraceContextTextMapPropagator()
    parent = None
    links = []
    for carrier in trace:
        context = propagator.extract(carrier=dict(carrier))
        span_context = api.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            continue
        if parent is None:
            parent = context
        links.append(api.Link(span_context))
    attributes: dict[str, Any] = {
        "faas.name": function,
        "cloud.region": region,
        "faas.trigger": "pubsub" if mapping else "other",
        "messaging.batch.message_count": records,
        "eventhub.attempt": attempt,
    }
    if mapping:
        attributes["eventhub.mapping"] = mapping
    kind = api.SpanKind.CONSUMER if mapping else api.SpanKind.INTERNAL
    with _tracer.start_as_current_span(
        function, context=parent, kind=kind, links=links, attributes=attributes, record_exception=False
    ) as span:
        yield span


def outcome(span: Any, result: Result) -> None:
    """Write an invocation's result into its span: its request id, and its masked error when it failed."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("faas.invocation_id", result.request_id)
    if not result.ok:
        message = redact.text(result.error_message)
        span.set_attribute("error.type", result.error or "error")
        span.set_status(Status(StatusCode.ERROR, message))


_XRAY_ROOT = re.compile(r"^1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})$")
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")


def xray_to_traceparent(header: str) -> str | None:
    """A W3C `traceparent` from an X-Ray trace header (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=
    53995c3f42cd8ad8;Sampled=1`, as SQS's `AWSTraceHeader` carries it); None when it names no parent segment
    (a span cannot continue a trace without one) or is not X-Ray's.

    X-Ray's trace id is its epoch part and its 96-bit identifier side by side; its parent is a 64-bit span id;
    `Sampled=1` is the sampled flag (anything else: not sampled)."""
    parts: dict[str, str] = {}
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            parts[key.strip()] = value.strip()
    root = _XRAY_ROOT.match(parts.get("Root", ""))
    parent = parts.get("Parent", "")
    if root is None or not _HEX16.match(parent):
        return None
    trace_id = (root.group(1) + root.group(2)).lower()
    if int(trace_id, 16) == 0 or int(parent, 16) == 0:
        return None
    flags = "01" if parts.get("Sampled") == "1" else "00"
    return f"00-{trace_id}-{parent.lower()}-{flags}"
