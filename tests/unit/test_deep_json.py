"""A record whose JSON is nested deeper than Python reads (a thousand `[`) is delivered as what it is, never an
exception in a source's or filter's path (which would fail its batch again at every read, for ever)."""

from __future__ import annotations

import base64

from connectors.mqtt import iot_event
from connectors.postgres.values import json_value
from connectors.redis_streams.events import _parsed
from connectors.s3.notifications import _records_of
from hub.filtering import FilterSet
from hub.records import data_view

DEEP = "[" * 100_000 + "]" * 100_000


def test_mqtt_delivers_it_as_binary_as_iot_does_with_what_is_not_json() -> None:
    event = iot_event(DEEP.encode(), "t/x", "topic")
    assert event == {"data": base64.b64encode(DEEP.encode()).decode(), "topic": "t/x"}
    assert iot_event(b"[[1]]", "t", None) == [[1]]  # nesting Python reads stays JSON


def test_a_filter_sees_it_as_a_string() -> None:
    view = data_view({"eventSource": "aws:sqs"}, "body", DEEP)
    assert view["body"] == DEEP
    assert not FilterSet.compile([{"body": {"kind": ["a"]}}]).matches(view)
    assert FilterSet.compile([{"eventSource": ["aws:sqs"]}]).matches(view)  # metadata patterns still apply


def test_redis_postgres_and_s3_notifications_keep_the_text() -> None:
    assert _parsed(DEEP) == DEEP
    assert json_value(DEEP) == {"S": DEEP}
    assert json_value('{"a": [1, "x"]}') == {"M": {"a": {"L": [{"N": "1"}, {"S": "x"}]}}}
    assert _records_of(DEEP) is None  # not an S3 event: the queue's message is handled as a foreign one
