"""The event an AWS IoT rule with a Lambda action sends for one MQTT message.

`SELECT * FROM '<filter>'` sends the message's JSON payload itself: no envelope, no metadata. A Lambda action
cannot take a payload that is not JSON: AWS's documented form for one is `SELECT encode(*, 'base64') AS data`, so
the hub sends `{"data": "<base64 of the bytes>"}` for it. An empty payload is `{}`, as `SELECT *` makes of one.
With `topic_key`, the topic is added as `SELECT *, topic() AS <key>` adds it: to a JSON object (the payload's own
key of that name is replaced, as the rule's projection replaces it) and to the `{"data": ...}` of a binary payload;
a JSON value that is not an object (an array, a number, a string) is sent as it is.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode

BINARY_KEY = "data"
"""Where a payload that is not JSON goes, base64-encoded: `SELECT encode(*, 'base64') AS data`."""


def iot_event(payload: bytes, topic: str, topic_key: str | None) -> Any:
    """What the function receives for a message with this payload, published to this topic."""
    event: Any
    if not payload:
        event = {}
    else:
        try:
            event = _decode(payload)  # in C; it gives what json.loads gives for every document it takes
        except msgspec.DecodeError:  # Python's json has the last word on the rest (it reads 1e400 as inf)
            try:
                event = json.loads(payload.decode("utf-8"), parse_constant=_not_json)
            except (ValueError, RecursionError):  # not UTF-8 (a ValueError), not JSON, or nested too deep to read
                event = {BINARY_KEY: base64.b64encode(payload).decode("ascii")}
        except RecursionError:  # JSON nested deeper than Python reads: delivered as the bytes it is
            event = {BINARY_KEY: base64.b64encode(payload).decode("ascii")}
    if topic_key is not None and isinstance(event, dict):
        event[topic_key] = topic
    return event


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # Python's json takes NaN and Infinity; JSON does not


def sample_event() -> dict[str, Any]:
    """A JSON payload on `sensors/sensor-7/telemetry`, as `SELECT *` sends it."""
    return {"device": "sensor-7", "temperature": 21.5, "humidity": 40, "battery": {"volts": 3.7, "low": False}}
