"""The records of Redis stream entries: their size and time, fields whose values are not UTF-8, what filter
patterns see, and a sample event (the event shape is documented in docs/events/redis.md)."""

from __future__ import annotations

import base64
import json
from typing import Any

RECORD_OVERHEAD = 300
"""Bytes a record adds to the event besides its fields: ids, attributes, ARN."""
FIELD_OVERHEAD = 24
"""Bytes a field adds besides its value: its name (short, as field names are), quotes and separators."""


def entry_millis(entry_id: str) -> int:
    """The creation time of a stream entry, from its id `<ms>-<seq>`."""
    try:
        return int(entry_id.partition("-")[0])
    except ValueError:
        return 0


ENCODING_ERRORS = "surrogateescape"
"""How the source's client decodes what Redis sends (in hiredis): bytes that are not UTF-8 become lone surrogates,
so that `split_binary` finds them and gets the original bytes back."""


def is_text(fields: dict[str, str]) -> bool:
    """Whether every name and value of an entry decoded from UTF-8 (the common case: ASCII, checked in C)."""
    if all(map(str.isascii, fields.values())) and all(map(str.isascii, fields)):
        return True
    return not any(map(_escaped, (*fields, *fields.values())))


def _escaped(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def split_binary(fields: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Text fields, and the fields whose values are not UTF-8 (base64-encoded), of an entry decoded with
    ENCODING_ERRORS. A name that is not UTF-8 shows its odd bytes as backslash escapes."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for name, value in fields.items():
        if _escaped(name):
            name = name.encode("utf-8", ENCODING_ERRORS).decode("utf-8", "backslashreplace")
        if _escaped(value):
            binary[name] = base64.b64encode(value.encode("utf-8", ENCODING_ERRORS)).decode("ascii")
        else:
            data[name] = value
    return data, binary


def _parsed(value: str) -> Any:
    try:
        return json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads: the string
        return value


def filter_view(payload: dict[str, Any]) -> dict[str, Any]:
    """What filter patterns see: the record's metadata, and `data` with each field parsed as JSON when it is
    JSON. Built only for mappings with filters."""
    view = {k: v for k, v in payload.items() if k not in ("data", "binaryData")}
    view["data"] = {name: _parsed(value) for name, value in payload["data"].items()}
    return view


def sample_event() -> dict[str, Any]:
    """An event of one stream entry, in the shape of an SQS event, for `hub events redis`."""
    return {
        "Records": [
            {
                "messageId": "1718000000000-0",
                "stream": "orders",
                "data": {"order_id": "1042", "payload": '{"item":"book","qty":2}'},
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1718000000000",
                    "ConsumerGroup": "orders-mapping",
                    "Consumer": "host-4242",
                },
                "eventSource": "redis:stream",
                "eventSourceARN": "redis://localhost:6379/0/orders",
                "awsRegion": "us-east-1",
            }
        ]
    }
