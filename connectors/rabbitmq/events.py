"""AWS's `aws:rmq` rendering of a message (headers, AMQP timestamps), the delivery count of a message, and a
sample event."""

from __future__ import annotations

import base64
import decimal
from datetime import UTC, datetime
from typing import Any

COUNT_HEADER = "x-hub-receive-count"
"""Deliveries of the earlier copies of a message that the hub returned to a classic queue by republishing it."""
BROKER_COUNT_HEADER = "x-delivery-count"
RECORD_OVERHEAD = 400


def amqp_timestamp(when: datetime) -> str:
    """AWS's rendering of an AMQP timestamp (Java's medium date format, UTC): `Jan 1, 1970, 12:33:41 AM`."""
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    hour = when.hour % 12 or 12
    return f"{when:%b} {when.day}, {when.year}, {hour}:{when:%M:%S} {'AM' if when.hour < 12 else 'PM'}"


def header_value(value: Any) -> Any:
    """A header value as AWS renders it: strings as `{"bytes": [...]}`, numbers and booleans as they are."""
    if isinstance(value, str):
        return {"bytes": list(value.encode("utf-8"))}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": list(bytes(value))}
    if isinstance(value, dict):
        return {str(k): header_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [header_value(v) for v in value]
    if isinstance(value, datetime):
        return amqp_timestamp(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def trace_headers(payload: dict[str, Any]) -> dict[str, str] | None:
    """The W3C trace context in a rendered message's headers (`traceparent`, `tracestate`), or None."""
    headers = payload.get("basicProperties", {}).get("headers") or {}
    found: dict[str, str] = {}
    for name in ("traceparent", "tracestate"):
        value = headers.get(name)
        if isinstance(value, dict) and isinstance(value.get("bytes"), list):
            found[name] = bytes(value["bytes"]).decode("ascii", "replace")
        elif isinstance(value, str):
            found[name] = value
    return found if "traceparent" in found else None


def delivery_count(headers: dict[str, Any], redelivered: bool) -> int:
    """Deliveries of a message so far, this one included."""
    earlier = _int(headers.get(COUNT_HEADER))
    if BROKER_COUNT_HEADER in headers:  # quorum queues count earlier deliveries themselves
        return earlier + _int(headers[BROKER_COUNT_HEADER]) + 1
    return earlier + (2 if redelivered else 1)


MOST_COUNTED = 2**31 - 1
"""The largest count a header is taken to say: a producer's `x-hub-receive-count: 10**30` is a huge count, not one
the republished copy's header (an AMQP long) could not carry."""


def _int(value: Any) -> int:
    """A count from a header: a number, or the text or bytes of one; anything else (`"abc"`, NaN, Infinity, a
    table) counts 0, never an exception in the record's path."""
    try:
        return min(max(0, int(value)), MOST_COUNTED)
    except (TypeError, ValueError, OverflowError):
        return 0


def sample_event() -> dict[str, Any]:
    """An Amazon MQ for RabbitMQ event of one message, for `hub events rabbitmq`."""
    return {
        "eventSource": "aws:rmq",
        "eventSourceArn": "arn:aws:mq:us-east-1:000000000000:broker:localhost:5672",
        "rmqMessagesByQueue": {
            "orders::/": [
                {
                    "basicProperties": {
                        "contentType": "application/json",
                        "contentEncoding": None,
                        "headers": {"source": {"bytes": list(b"shop")}, "retries": 0},
                        "deliveryMode": 2,
                        "priority": None,
                        "correlationId": None,
                        "replyTo": None,
                        "expiration": None,
                        "messageId": "order-1042",
                        "timestamp": "Jun 10, 2024, 6:13:20 AM",
                        "type": None,
                        "userId": "guest",
                        "appId": None,
                        "clusterId": None,
                        "bodySize": 26,
                    },
                    "redelivered": False,
                    "data": base64.b64encode(b'{"item":"book","qty":2}\n  ').decode(),
                }
            ]
        },
    }
