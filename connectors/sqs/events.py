"""Lambda's SQS event shape, and what a ReceiveMessage answer's message says about its delivery."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from hub.tracing import xray_to_traceparent


def _b64(value: Any) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode("ascii")


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = _b64(value["BinaryValue"])
    out["stringListValues"] = list(value.get("StringListValues") or [])
    out["binaryListValues"] = [_b64(v) for v in value.get("BinaryListValues") or []]
    out["dataType"] = value.get("DataType", "String")
    return out


def sqs_record(message: dict[str, Any], *, arn: str, region: str) -> dict[str, Any]:
    """One `Records[]` entry of Lambda's SQS event, from a ReceiveMessage answer's message."""
    body = message.get("Body", "")
    out: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {k: _attribute(v) for k, v in (message.get("MessageAttributes") or {}).items()},
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
    }
    if message.get("MD5OfMessageAttributes"):
        out["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    out.update(eventSource="aws:sqs", eventSourceARN=arn, awsRegion=region)
    return out


def trace_context(payload: dict[str, Any]) -> dict[str, str] | None:
    """The W3C trace context of an SQS record: its `AWSTraceHeader` system attribute (X-Ray's format, which AWS
    services and the X-Ray SDK set) converted, else its `traceparent`/`tracestate` message attributes."""
    header = payload.get("attributes", {}).get("AWSTraceHeader")
    if header:
        traceparent = xray_to_traceparent(header)
        if traceparent is not None:
            return {"traceparent": traceparent}
    attributes = payload.get("messageAttributes") or {}
    parent = (attributes.get("traceparent") or {}).get("stringValue")
    if not parent:
        return None
    state = (attributes.get("tracestate") or {}).get("stringValue")
    return {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}


def message_attempt(message: dict[str, Any]) -> int:
    """The message's ApproximateReceiveCount: the record's attempt."""
    return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", "1"))


def sent_at(message: dict[str, Any]) -> float:
    """When the message was sent (epoch seconds): the record's timestamp."""
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    return int(sent) / 1000 if sent else time.time()


def sample_event() -> dict[str, Any]:
    """An SQS event of one message, for `hub events sqs`."""
    message = {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "Body": '{"City": "Seattle"}',
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "MessageAttributes": {"Attribute1": {"StringValue": "AttributeValue1", "DataType": "String"}},
        "MD5OfMessageAttributes": "582c92c5c5b6ac403040a4f3ab3115c9",
    }
    return {"Records": [sqs_record(message, arn="arn:aws:sqs:us-east-1:123456789012:my-queue", region="us-east-1")]}
