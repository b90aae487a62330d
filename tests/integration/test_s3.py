"""The `s3` connector against moto_server: bucket notifications through SQS with the hub as a real process
(records as S3 sent them, the test event skipped, asynchronous retries then the destination), and poll mode
in-process (new and overwritten objects, nothing old after a restart, a bounded state). The scenarios every
connector passes (restart, broker cut, SIGKILL...) are in tests/connectors/."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.s3 import CONNECTOR, PollSource, S3Config
from hub.checkpoints import MemoryStore
from hub.records import Outcome, Record
from hub.source import SourceContext
from tests.fixtures_aws import REGION, boto, connection, create_bucket, create_queue
from tests.helpers import ROOT, HubProcess, read_jsonl, shape, wait_for

SAMPLE = json.loads((ROOT / "tests/conformance/events/s3-event.json").read_text())


def depth(url: str, queue_url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = boto(url, "sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


def test_notifications_invoke_once_per_message_skip_the_test_event_and_retry(tmp_path: Path, moto: str) -> None:
    s3, sqs = boto(moto, "s3"), boto(moto, "sqs")
    bucket, queue = create_bucket(moto), create_queue(moto)
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"Id": "uploads", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    assert depth(moto, queue)[0] == 1, "S3 sent its s3:TestEvent"
    out, failures = tmp_path / "out.jsonl", tmp_path / "failures.jsonl"
    config = {
        "checkpoints": f"sqlite:///{tmp_path / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": "functions.recorder.fail_on_bad", "timeout": "10s"}},
        "mappings": [
            {
                "function": "fn",
                "source": {"type": "s3", "queue_url": queue, "wait_time": 1, "connection": connection(moto)},
                "maximum_retry_attempts": 1,
                "retry_delay": "100ms",
                "destination_config": {"on_failure": {"type": "file", "path": str(failures)}},
            }
        ],
    }
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        for key in ("one.txt", "two.txt", "bad.txt"):
            s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        wait_for(lambda: read_jsonl(failures), 20, "the failing object at the destination")
        wait_for(lambda: len(read_jsonl(out)) >= 4, 10, "every invocation")
        wait_for(lambda: depth(moto, queue) == (0, 0), 10, "every message deleted")
        assert hub.stop() == 0
    events = [entry["event"] for entry in read_jsonl(out)]
    assert all(len(event["Records"]) == 1 for event in events), "one invocation per message, never the test event"
    keys = sorted(event["Records"][0]["s3"]["object"]["key"] for event in events)
    assert keys == ["bad.txt", "bad.txt", "one.txt", "two.txt"], "bad.txt: the first attempt and one retry"
    record = events[0]["Records"][0]
    assert record["eventSource"] == "aws:s3" and record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == bucket and record["s3"]["configurationId"] == "uploads"
    [failure] = read_jsonl(failures)
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "bad.txt"


# ---- poll mode -----------------------------------------------------------------------------------------------


def poll_source(url: str, bucket: str, store: MemoryStore, mapping: str = "uploads", **settings: Any) -> PollSource:
    config = S3Config.model_validate(
        {
            "type": "s3",
            "mode": "poll",
            "bucket": bucket,
            "poll_interval": "100ms",
            "suffix": ".txt",
            "connection": connection(url),
            **settings,
        }
    )
    source = CONNECTOR.build(config, SourceContext(mapping=mapping, store=store, region=REGION, account_id="1" * 12))
    assert isinstance(source, PollSource)
    return source


async def read_keys(source: PollSource, n: int, timeout: float = 5.0) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"read {len(got)} of {n} objects: {[r.item_id for r in got]}")
        got.extend(await source.read(10, 0.3))
    assert await source.read(10, 0.3) == [], "nothing more"
    return got


async def test_poll_finds_new_and_overwritten_objects_and_nothing_old_after_a_restart(moto: str) -> None:
    s3 = boto(moto, "s3")
    bucket = create_bucket(moto)
    for key in ("old-a.txt", "old-b.txt", "skip.log"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"old")
    store = MemoryStore()
    first = poll_source(moto, bucket, store, lookback=0)
    await first.open()
    assert await first.read(10, 0.5) == [], "LATEST: objects already there are no events"
    s3.put_object(Bucket=bucket, Key="new c.txt", Body=b"c")
    [created] = await read_keys(first, 1)
    payload = created.payload
    assert payload["s3"]["object"]["key"] == "new+c.txt" and payload["s3"]["object"]["size"] == 1
    assert payload["eventName"] == "ObjectCreated:Put" and payload["s3"]["bucket"]["name"] == bucket
    assert shape({"Records": [payload]}) == shape(SAMPLE)
    assert first.render([created], 1) == {"Records": [payload]}
    await first.settle(Outcome(succeeded=(created,)))
    s3.put_object(Bucket=bucket, Key="old-a.txt", Body=b"overwritten")
    [overwritten] = await read_keys(first, 1)
    assert overwritten.item_id == "old-a.txt"
    assert overwritten.payload["s3"]["object"]["eTag"] != created.payload["s3"]["object"]["eTag"]
    await first.settle(Outcome(succeeded=(overwritten,)))
    s3.put_object(Bucket=bucket, Key="in-flight.txt", Body=b"e")
    [in_flight] = await read_keys(first, 1)
    assert in_flight.item_id == "in-flight.txt"
    await first.close()  # the hub dies with in-flight.txt unsettled
    await first.close()
    s3.put_object(Bucket=bucket, Key="while-down.txt", Body=b"d")

    second = poll_source(moto, bucket, store, lookback=0)
    await second.open()
    again = await read_keys(second, 2)
    assert sorted(r.item_id for r in again) == ["in-flight.txt", "while-down.txt"]
    await second.settle(Outcome(succeeded=tuple(again)))
    assert await second.read(10, 0.5) == []
    await second.close()
    state = await store.get_all("uploads/s3/" + bucket + "/")
    assert len(state) <= 5 and "skip.log" not in state  # only objects near the watermark are remembered

    everything = poll_source(moto, bucket, store, mapping="backfill", starting_position="TRIM_HORIZON")
    await everything.open()
    found = await read_keys(everything, 5)
    assert sorted(r.item_id for r in found) == sorted(
        ["new c.txt", "old-a.txt", "old-b.txt", "in-flight.txt", "while-down.txt"]
    )
    await everything.close()


def test_config_settings_belong_to_their_mode() -> None:
    with pytest.raises(ValidationError, match="exactly one of queue_url and queue_name"):
        S3Config.model_validate({"type": "s3"})
    with pytest.raises(ValidationError, match="give the bucket"):
        S3Config.model_validate({"type": "s3", "mode": "poll"})
    with pytest.raises(ValidationError, match="prefix: not used with mode notifications"):
        S3Config.model_validate({"type": "s3", "queue_name": "q", "prefix": "x/"})
    with pytest.raises(ValidationError, match="queue_name: not used with mode poll"):
        S3Config.model_validate({"type": "s3", "mode": "poll", "bucket": "b", "queue_name": "q"})
    for name, field in S3Config.model_fields.items():
        assert field.description or name == "type", name
