"""AWS's on-failure records: the documents a destination receives when a mapping gives up on records."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.clock import Clock
from hub.records import Record, plain
from hub.runtimes import Result
from hub.source import BatchInfoSource, Destination, Document, Source


def iso(ts: float) -> str:
    """Epoch seconds as AWS writes a failure record's `timestamp`: ISO-8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FailureRecords:
    """Builds the failure records of one mapping: AWS's asynchronous invocation record, and its stream on-failure
    records with the source's batch info."""

    function_arn: str
    mapping: str
    source: Source
    clock: Clock

    def base(self, attempts: int, result: Result | None, condition: str) -> dict[str, Any]:
        """The parts every failure record has: the request context, the response context (None when the function
        never answered) and the time."""
        return {
            "requestContext": {
                "requestId": result.request_id if result else str(uuid.uuid4()),
                "functionArn": f"{self.function_arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "responseContext": (
                {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"} if result else None
            ),
            "version": "1.0",
            "timestamp": iso(self.clock.time()),
        }

    def asynchronous(
        self, records: Sequence[Record], attempts: int, result: Result | None, condition: str
    ) -> list[Document]:
        """AWS's asynchronous invocation record: requestPayload is the event, responsePayload the error."""
        body = self.base(attempts, result, condition)
        if result is None:
            body["responseContext"] = {"statusCode": 429, "executedVersion": "$LATEST", "functionError": "Unhandled"}
        body["requestPayload"] = plain(self.source.render(records, max(1, attempts)))
        body["responsePayload"] = result.payload if result else None
        return [Document(body, mapping=self.mapping, lane=records[0].lane)]

    def stream(
        self,
        records: Sequence[Record],
        attempts: int,
        result: Result | None,
        condition: str,
        destination: Destination,
    ) -> list[Document]:
        """AWS's stream on-failure record: metadata and the source's batch info; S3 also gets the whole event as
        an escaped string in `payload`; a Kafka topic gets one message per record, keyed as the record was."""
        batch_info = self.source.batch_info if isinstance(self.source, BatchInfoSource) else None
        if destination.per_record:
            documents = []
            for record in records:
                body = self.base(attempts, result, condition)
                info = batch_info([record]) if batch_info else {}
                body.update(_single_record_info(info))
                body["payload"] = plain(self.source.render([record], 1))
                documents.append(
                    Document(body, key=_key_bytes(record.order_key), mapping=self.mapping, lane=record.lane)
                )
            return documents
        body = self.base(attempts, result, condition)
        body.update(batch_info(records) if batch_info else {})
        if destination.includes_payload:
            body["payload"] = json.dumps(plain(self.source.render(records, 1)))
        return [Document(body, mapping=self.mapping, lane=records[0].lane)]


def _key_bytes(key: Any) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return str(key).encode()


def _single_record_info(info: dict[str, Any]) -> dict[str, Any]:
    """AWS's per-record form of a batch info (Kafka topic destinations): `recordInfo` instead of `recordsInfo`."""
    out = {}
    for name, value in info.items():
        if isinstance(value, dict) and "recordsInfo" in value:
            value = dict(value)
            first: dict[str, Any] = next(iter(value.pop("recordsInfo").values()), {})
            value["recordInfo"] = {
                "offset": first.get("firstRecordOffset"),
                "timestamp": first.get("firstRecordTimestamp"),
            }
        out[name] = value
    return out
