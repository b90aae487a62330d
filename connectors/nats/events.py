"""The `nats` event (the hub's own shape, documented in docs/events/nats.md): what a JetStream delivery's reply
subject says about it, the record of one message, and a sample event."""

from __future__ import annotations

import base64
from typing import Any, NamedTuple

EVENT_SOURCE = "nats:jetstream"
RECORD_OVERHEAD = 400
"""Bytes a record adds to the event besides its data and headers: ids, attributes, ARN."""
HEADER_OVERHEAD = 8


class Delivery(NamedTuple):
    """What JetStream says of one delivery in its ack subject (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream
    seq>.<consumer seq>.<ns>.<pending>`, or the form with a domain and an account hash before the stream)."""

    stream: str
    consumer: str
    delivered: int
    stream_seq: int
    consumer_seq: int
    timestamp_ns: int


def delivery(reply: str) -> Delivery | None:
    """The delivery an ack subject names; None when it is not one (a status message, a plain reply)."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        return None
    at = 2 if len(tokens) == 9 else 4  # v2: $JS.ACK.<domain>.<account hash>.<stream>...
    try:
        return Delivery(
            tokens[at],
            tokens[at + 1],
            int(tokens[at + 2]),
            int(tokens[at + 3]),
            int(tokens[at + 4]),
            int(tokens[at + 5]),
        )
    except (IndexError, ValueError):
        return None


def nats_record(
    subject: str,
    data: bytes,
    headers: dict[str, str] | None,
    meta: Delivery,
    *,
    arn: str,
    region: str,
) -> dict[str, Any]:
    """One `Records[]` entry of the event, for a message JetStream delivered."""
    return {
        "messageId": str(meta.stream_seq),
        "subject": subject,
        "data": base64.b64encode(data).decode("ascii"),
        "headers": dict(headers) if headers else {},
        "stream": meta.stream,
        "consumer": meta.consumer,
        "sequence": {"stream": meta.stream_seq, "consumer": meta.consumer_seq},
        "attributes": {
            "ApproximateReceiveCount": str(meta.delivered),
            "SentTimestamp": str(meta.timestamp_ns // 1_000_000),
        },
        "eventSource": EVENT_SOURCE,
        "eventSourceARN": arn,
        "awsRegion": region,
    }


def sample_event() -> dict[str, Any]:
    """An event of one JetStream message, for `hub events nats`."""
    meta = Delivery("ORDERS", "orders", 1, 1042, 17, 1_718_000_000_123_456_789)
    record = nats_record(
        "orders.created",
        b'{"item":"book","qty":2}',
        {"Nats-Msg-Id": "order-1042", "source": "shop"},
        meta,
        arn="nats://localhost:4222/ORDERS/orders",
        region="us-east-1",
    )
    return {"Records": [record]}
