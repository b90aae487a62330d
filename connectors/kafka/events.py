"""AWS's Kafka events: records shaped from aiokafka ConsumerRecords, the event that groups them by partition (the
self-managed form, or Amazon MSK's with the cluster's ARN), the on-failure batch info, and sample events.

The two forms differ in the envelope only: self-managed Kafka has `eventSource: "SelfManagedKafka"` and no
`eventSourceArn`; MSK has `eventSource: "aws:kafka"` and `eventSourceArn`, the cluster's ARN, which its
`KafkaBatchInfo` names too. Records are the same in both."""

from __future__ import annotations

import array
import binascii
import json
import operator
import time
from collections.abc import Iterable, Sequence
from typing import Any

from hub.isotime import iso_ms
from hub.records import Record, data_view

EVENT_SOURCE = "SelfManagedKafka"
MSK_EVENT_SOURCE = "aws:kafka"
RECORD_OVERHEAD = 160
"""Bytes a record adds to the event besides its base64 key, value and headers (field names, coordinates)."""
_b2a = binascii.b2a_base64
_lane = operator.attrgetter("lane")
_payload = operator.attrgetter("payload")


def signed_bytes(value: bytes | None) -> list[int]:
    """A header value as AWS shows it: the bytes as signed integers (-128..127)."""
    return array.array("b", value).tolist() if value else []


def filter_view(record: Record) -> dict[str, Any]:
    """What filter patterns see of a Kafka record: its metadata plus `value` decoded from base64 and parsed
    (data_view). Built only for mappings with filters."""
    payload = record.payload
    metadata = {k: v for k, v in payload.items() if k != "value"}
    value = payload.get("value")
    return data_view(metadata, "value", None if value is None else binascii.a2b_base64(value))


def kafka_records(messages: Iterable[Any], lane: str, topic: str, partition: int) -> list[Record]:
    """Hub Records from aiokafka ConsumerRecords of the partition `lane` (`topic`-`partition`): each payload is
    AWS's self-managed Kafka record. A record without a key has no `key` field; one without a value (a
    tombstone) has `"value": null`.

    This runs for every record the hub reads from Kafka, so it is one loop with nothing but the record's
    own work in it: no call per record besides base64, positional Record arguments, the item id left to its
    default `(lane, offset)`, the filter view left to `filter_view` (only mappings with filters build one).
    """
    b2a = _b2a
    now = time.time()
    received = time.monotonic()
    records: list[Record] = []
    append = records.append
    for message in messages:
        key_bytes = message.key
        value_bytes = message.value
        offset = message.offset
        timestamp = message.timestamp
        timestamp_type = "LOG_APPEND_TIME" if message.timestamp_type == 1 else "CREATE_TIME"
        value = None if value_bytes is None else b2a(value_bytes, newline=False).decode()
        size = RECORD_OVERHEAD if value is None else RECORD_OVERHEAD + len(value)
        if key_bytes is None:
            payload = {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "timestamp": timestamp,
                "timestampType": timestamp_type,
                "value": value,
                "headers": [],
            }
        else:
            key = b2a(key_bytes, newline=False).decode()
            size += len(key)
            payload = {
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "timestamp": timestamp,
                "timestampType": timestamp_type,
                "key": key,
                "value": value,
                "headers": [],
            }
        headers = message.headers
        if headers:
            payload["headers"] = [{name: signed_bytes(data)} for name, data in headers]
            size += sum(len(name) + 4 * len(data or b"") + 8 for name, data in headers)
        append(
            Record(
                lane,
                offset,
                payload,
                timestamp / 1000 if timestamp >= 0 else now,
                size,
                None,
                1,
                None,
                key_bytes,
                received,
            )
        )
    return records


def kafka_event(bootstrap_servers: str, records: Sequence[Record], cluster_arn: str | None = None) -> dict[str, Any]:
    """AWS's Kafka event: records grouped under `topic-partition`, in offset order. Without `cluster_arn` the
    self-managed form; with it Amazon MSK's (`eventSource: "aws:kafka"`, `eventSourceArn` the cluster's ARN)."""
    grouped: dict[str, list[Any]]
    lanes = set(map(_lane, records))
    if len(lanes) == 1:  # a batch is one partition's: no per-record grouping
        grouped = {lanes.pop(): list(map(_payload, records))}
    else:
        grouped = {}
        for record in records:
            grouped.setdefault(record.lane, []).append(record.payload)
    if cluster_arn is None:
        return {"eventSource": EVENT_SOURCE, "bootstrapServers": bootstrap_servers, "records": grouped}
    return {
        "eventSource": MSK_EVENT_SOURCE,
        "eventSourceArn": cluster_arn,
        "bootstrapServers": bootstrap_servers,
        "records": grouped,
    }


def kafka_batch_info(
    bootstrap_servers: str, records: Sequence[Record], cluster_arn: str | None = None
) -> dict[str, Any]:
    """AWS's `KafkaBatchInfo` for a given-up batch (the SQS/SNS on-failure record, without the records); for MSK
    (`cluster_arn` set) it names the cluster by `eventSourceArn`, as AWS does."""
    info: dict[str, dict[str, str]] = {}
    for record in records:
        payload = record.payload
        entry = info.get(record.lane)
        if entry is None:
            entry = info[record.lane] = {
                "firstRecordOffset": str(payload["offset"]),
                "lastRecordOffset": str(payload["offset"]),
                "firstRecordTimestamp": iso_ms(payload["timestamp"]),
                "lastRecordTimestamp": iso_ms(payload["timestamp"]),
            }
        entry["lastRecordOffset"] = str(payload["offset"])
        entry["lastRecordTimestamp"] = iso_ms(payload["timestamp"])
    event = kafka_event(bootstrap_servers, records, cluster_arn)
    payload_size = len(json.dumps(event, separators=(",", ":")).encode())
    batch: dict[str, Any] = {"batchSize": len(records)}
    if cluster_arn is not None:
        batch["eventSourceArn"] = cluster_arn
    batch.update(bootstrapServers=bootstrap_servers, payloadSize=payload_size, recordsInfo=info)
    return {"KafkaBatchInfo": batch}


def sample_event() -> dict[str, Any]:
    """A self-managed Kafka event as AWS sends it (no eventSourceArn: that is for Amazon MSK only)."""
    return {
        "eventSource": EVENT_SOURCE,
        "bootstrapServers": "b-1.kafka.example.com:9092,b-2.kafka.example.com:9092",
        "records": {
            "mytopic-0": [
                {
                    "topic": "mytopic",
                    "partition": 0,
                    "offset": 15,
                    "timestamp": 1545084650987,
                    "timestampType": "CREATE_TIME",
                    "key": "a2V5LTE=",
                    "value": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                    "headers": [{"headerKey": [104, 101, 97, 100, 101, 114, 86, 97, 108, 117, 101]}],
                }
            ]
        },
    }


def msk_sample_event() -> dict[str, Any]:
    """An Amazon MSK event as AWS sends it: the self-managed event's records, `eventSource: "aws:kafka"` and the
    cluster's ARN (`hub events kafka msk`)."""
    sample = sample_event()
    return {
        "eventSource": MSK_EVENT_SOURCE,
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/demo-cluster/"
        "751d2973-a626-431c-9d4e-d7975eb44dd7-2",
        "bootstrapServers": "b-1.demo-cluster.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092,"
        "b-2.demo-cluster.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092",
        "records": sample["records"],
    }


TRACE_HEADERS = ("traceparent", "tracestate")


def trace_headers(record: Record) -> dict[str, str] | None:
    """The W3C trace context in a Kafka record's headers (`traceparent`, `tracestate`), or None."""
    headers = record.payload.get("headers") if isinstance(record.payload, dict) else None
    if not headers:
        return None
    found: dict[str, str] = {}
    for header in headers:
        for name, data in header.items():
            if name in TRACE_HEADERS and isinstance(data, list):
                found[name] = bytes(b & 0xFF for b in data).decode("ascii", "replace")
    return found if "traceparent" in found else None
