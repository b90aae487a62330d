"""AWS's self-managed Kafka event: records shaped from aiokafka ConsumerRecords, the event that groups them by
partition, the on-failure batch info, and a sample event."""

from __future__ import annotations

import array
import binascii
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from hub.records import Record, data_view

EVENT_SOURCE = "SelfManagedKafka"
RECORD_OVERHEAD = 160
"""Bytes a record adds to the event besides its base64 key, value and headers (field names, coordinates)."""
_b2a = binascii.b2a_base64


def iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signed_bytes(value: bytes | None) -> list[int]:
    """A header value as AWS shows it: the bytes as signed integers (-128..127)."""
    return array.array("b", value).tolist() if value else []


class FilterView(Mapping[str, Any]):
    """What filter patterns see for a record: its metadata plus `value` parsed (data_view), built only when a
    filter first looks, so that mappings without filters never pay for parsing every value."""

    __slots__ = ("_payload", "_value", "_view")

    def __init__(self, payload: dict[str, Any], value: bytes | None) -> None:
        self._payload = payload
        self._value = value
        self._view: dict[str, Any] | None = None

    def _resolved(self) -> dict[str, Any]:
        if self._view is None:
            metadata = {k: v for k, v in self._payload.items() if k != "value"}
            self._view = data_view(metadata, "value", self._value)
        return self._view

    def __getitem__(self, key: str) -> Any:
        return self._resolved()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolved())

    def __len__(self) -> int:
        return len(self._resolved())


def kafka_record(message: Any, lane: str, topic: str, partition: int) -> Record:
    """A hub Record from an aiokafka ConsumerRecord of the partition `lane` (`topic`-`partition`): the payload is
    AWS's self-managed Kafka record. A record without a key has no `key` field; one without a value (a
    tombstone) has `"value": null`. This runs for every record: keep it lean."""
    key_bytes = message.key
    value_bytes = message.value
    offset = message.offset
    timestamp = message.timestamp
    size = RECORD_OVERHEAD
    value = None
    if value_bytes is not None:
        value = _b2a(value_bytes, newline=False).decode()
        size += len(value)
    timestamp_type = "LOG_APPEND_TIME" if message.timestamp_type == 1 else "CREATE_TIME"
    payload: dict[str, Any]
    if key_bytes is not None:
        key = _b2a(key_bytes, newline=False).decode()
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
    else:
        payload = {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp": timestamp,
            "timestampType": timestamp_type,
            "value": value,
            "headers": [],
        }
    if message.headers:
        payload["headers"] = [{name: signed_bytes(data)} for name, data in message.headers]
        size += sum(len(name) + 4 * len(data or b"") + 8 for name, data in message.headers)
    return Record(
        lane,
        offset,
        payload,
        timestamp=timestamp / 1000 if timestamp >= 0 else time.time(),
        size=size,
        item_id=(lane, offset),
        filter_view=FilterView(payload, value_bytes),
        order_key=key_bytes,
    )


def kafka_event(bootstrap_servers: str, records: Iterable[Record]) -> dict[str, Any]:
    """AWS's self-managed Kafka event: records grouped under `topic-partition`, in offset order."""
    grouped: dict[str, list[Any]] = {}
    for record in records:
        payloads = grouped.get(record.lane)
        if payloads is None:
            payloads = grouped[record.lane] = []
        payloads.append(record.payload)
    return {"eventSource": EVENT_SOURCE, "bootstrapServers": bootstrap_servers, "records": grouped}


def kafka_batch_info(bootstrap_servers: str, records: Sequence[Record]) -> dict[str, Any]:
    """AWS's `KafkaBatchInfo` for a given-up batch (the SQS/SNS on-failure record, without the records)."""
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
    payload_size = len(json.dumps(kafka_event(bootstrap_servers, records), separators=(",", ":")).encode())
    return {
        "KafkaBatchInfo": {
            "batchSize": len(records),
            "bootstrapServers": bootstrap_servers,
            "payloadSize": payload_size,
            "recordsInfo": info,
        }
    }


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
