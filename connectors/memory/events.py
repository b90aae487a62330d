"""The records of the `memory` connector, as its functions see them (documented in docs/events/memory.md): what
filter patterns see, the on-failure batch info of a stream, and a sample event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hub.records import Record, data_view

EVENT_SOURCE = "hub:memory"


def arn(name: str) -> str:
    """What `eventSourceARN` says of a channel."""
    return f"memory://{name}"


def payload(
    message_id: str,
    name: str,
    lane: str,
    data: Any,
    sent: float,
    region: str,
    key: str | None,
    *,
    deliveries: int | None = None,
    sequence: int | None = None,
) -> dict[str, Any]:
    """One record of an event: SQS's shape where SQS has a counterpart (`data` for `body`), plus its lane. A queue's
    record counts its deliveries (`ApproximateReceiveCount`), a stream's has its position in the lane
    (`sequenceNumber`) and, when it was put with one, its key (`partitionKey`)."""
    attributes = {"SentTimestamp": str(int(sent * 1000))}
    if deliveries is not None:
        attributes = {"ApproximateReceiveCount": str(deliveries), **attributes}
    record: dict[str, Any] = {"messageId": message_id, "lane": lane}
    if sequence is not None:
        record["sequenceNumber"] = str(sequence)
    if key is not None:
        record["partitionKey"] = key
    record.update(
        data=data, attributes=attributes, eventSource=EVENT_SOURCE, eventSourceARN=arn(name), awsRegion=region
    )
    return record


def filter_view(record: Record) -> dict[str, Any]:
    """What filter patterns see: the metadata, and `data` (text that is JSON parsed, as SQS's `body` is)."""
    fields = record.payload
    data = fields["data"]
    view = data_view({k: v for k, v in fields.items() if k != "data"}, "data", data if isinstance(data, str) else None)
    if not isinstance(data, str):
        view["data"] = data
    return view


def iso(ts: float) -> str:
    """Epoch seconds as an ISO-8601 UTC time with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def batch_info(name: str, records: Sequence[Record]) -> dict[str, Any]:
    """The part of the on-failure record that describes a given-up batch of a stream lane (as KinesisBatchInfo)."""
    return {
        "MemoryBatchInfo": {
            "name": name,
            "lane": records[0].lane,
            "startPosition": records[0].position,
            "endPosition": records[-1].position,
            "approximateArrivalOfFirstRecord": iso(records[0].timestamp),
            "approximateArrivalOfLastRecord": iso(records[-1].timestamp),
            "batchSize": len(records),
            "eventSourceARN": arn(name),
        }
    }


def sample_event() -> dict[str, Any]:
    """An event of one memory record, for `hub events memory`."""
    return {
        "Records": [
            payload(
                "orders-0:0", "orders", "orders-0", {"order_id": 1042}, 1718000000.0, "us-east-1", "c-7", sequence=0
            ),
        ]
    }
