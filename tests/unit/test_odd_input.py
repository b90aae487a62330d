"""Inputs a broker really hands the hub, that used to make a record's path raise (a poison pill: the batch failed at
every read, or a record was never delivered): each is now delivered as it is."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from connectors.files.events import iso, s3_record
from connectors.files.source import _stored, _unstored
from connectors.kafka.events import kafka_batch_info, kafka_records
from connectors.rabbitmq.events import BROKER_COUNT_HEADER, COUNT_HEADER, delivery_count
from hub.backoff import Backoff
from hub.isotime import iso_ms


@pytest.mark.parametrize("attempt", [1025, 2000, 10**30])
def test_a_huge_delivery_count_waits_the_cap(attempt: int) -> None:
    """A message delivered a thousand times (NATS's delivered count, SQS's ApproximateReceiveCount) or a header that
    says 10**30: the backoff is the cap, not an OverflowError (nor a 2**(10**30) to compute)."""
    assert 30 <= Backoff(0.5, 60).delay(attempt) <= 60


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "abc", b"abc", -1, None, [1], {"a": 1}])
def test_a_rabbitmq_count_header_that_is_no_count_counts_nothing(value: object) -> None:
    assert delivery_count({BROKER_COUNT_HEADER: value}, False) == 1
    assert delivery_count({COUNT_HEADER: value}, True) == 2


def test_a_rabbitmq_count_header_too_large_for_amqp_is_capped() -> None:
    count = delivery_count({COUNT_HEADER: 10**30}, False)
    assert 2**31 <= count < 2**63  # still a huge count, and one the republished copy's header carries
    assert delivery_count({COUNT_HEADER: b"3"}, False) == 4


def _message(offset: int, timestamp: int) -> SimpleNamespace:
    return SimpleNamespace(key=None, value=b"v", offset=offset, timestamp=timestamp, timestamp_type=0, headers=[])


def test_kafka_timestamps_past_datetime_years_render_as_java_does() -> None:
    """A producer sets any int64 as a record's CreateTime: the batch info of a given-up batch (the on-failure
    record) used to raise on one past 9999, and the give-up failed at every read."""
    records = kafka_records([_message(0, 2**63 - 1), _message(1, -(2**63))], "t-0", "t", 0)
    info = kafka_batch_info("b:9092", records)["KafkaBatchInfo"]["recordsInfo"]["t-0"]
    assert info["firstRecordTimestamp"] == "+292278994-08-17T07:12:55.807Z"  # Java's Instant.ofEpochMilli
    assert info["lastRecordTimestamp"] == "-292275055-05-16T16:47:04.192Z"
    assert iso_ms(253402300800000) == "+10000-01-01T00:00:00.000Z"
    assert iso_ms(1545084650987) == "2018-12-17T22:10:50.987Z"  # an ordinary time is written as before


def test_a_file_name_that_is_not_utf8_keeps_its_bytes() -> None:
    key = b"dir/caf\xe9 x.txt".decode("utf-8", "surrogateescape")  # as os.walk names it
    record = s3_record(
        event_name="ObjectCreated:Put",
        bucket="b",
        key=key,
        event_time=1e12,
        region="r",
        configuration_id="c",
        sequencer="00",
    )
    assert record["s3"]["object"]["key"] == "dir/caf%E9+x.txt"
    assert record["eventTime"] == iso(1e12) == "+33658-09-27T01:46:40.000Z"  # an mtime past 9999
    assert _stored(key).encode("utf-8") and _unstored(_stored(key)) == key  # a store can keep it, and give it back
    assert _stored("photos/a b.jpg") == "photos/a b.jpg" == _unstored("photos/a b.jpg")
