"""Failure documents read back (hub.readback): what each kind says, how it can be replayed, and the file destination's
listing and removal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hub import registry
from hub.config import FileDestination
from hub.destinations import FileSink
from hub.readback import FileInbox, Letter, describe, event_of, open_inbox
from hub.source import Document

S3_EVENT = {"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": "photo.jpg"}}}]}


def invocation_record() -> dict[str, object]:
    return {
        "requestContext": {"requestId": "r-1", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "timestamp": "2026-01-02T03:04:05.000Z",
        "requestPayload": S3_EVENT,
        "responsePayload": {"errorType": "ValueError", "errorMessage": "bad photo"},
    }


def test_an_invocation_record_is_replayed_with_its_event() -> None:
    entry = describe(Letter("a", invocation_record()))
    assert entry["replay"] == "event" and entry["records"] == 1
    assert entry["condition"] == "RetriesExhausted" and entry["attempts"] == 3 and entry["request_id"] == "r-1"
    assert entry["error"] == "ValueError: bad photo" and entry["summary"] == "aws:s3: photo.jpg"
    assert entry["when"] == "2026-01-02T03:04:05.000Z"
    assert event_of(Letter("a", invocation_record())) == S3_EVENT


def test_a_stream_record_names_positions_or_carries_its_payload() -> None:
    info = {"shardId": "shardId-0", "startSequenceNumber": "1", "endSequenceNumber": "9", "batchSize": 4}
    by_position = {"requestContext": {"condition": "RetryAttemptsExhausted"}, "KinesisBatchInfo": info}
    entry = describe(Letter("b", by_position), registry.get("kinesis"))
    assert entry["replay"] == "source" and entry["source"] == "kinesis" and entry["records"] == 4
    assert entry["summary"] == "shard shardId-0 sequence 1..9"
    assert event_of(Letter("b", by_position)) is None
    with_payload = {**by_position, "payload": json.dumps({"Records": [{"eventSource": "aws:kinesis"}] * 2})}
    assert describe(Letter("c", with_payload), registry.get("kinesis"))["replay"] == "event"
    assert event_of(Letter("c", with_payload)) == {"Records": [{"eventSource": "aws:kinesis"}] * 2}
    kafka = {
        "KafkaBatchInfo": {"batchSize": 2, "recordsInfo": {"t-0": {"firstRecordOffset": "5", "lastRecordOffset": "6"}}}
    }
    assert describe(Letter("d", kafka), registry.get("kafka"))["summary"] == "t-0 offset 5..6"
    assert describe(Letter("e", {"something": "else"}))["replay"] is None


def test_a_dead_letter_is_its_event_with_attributes() -> None:
    attributes = {
        "RequestID": {"DataType": "String", "StringValue": "r-2"},
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "boom"},
    }
    entry = describe(Letter("f", S3_EVENT, attributes))
    assert entry["kind"] == "dead letter" and entry["replay"] == "event"
    assert (entry["request_id"], entry["error"], entry["condition"]) == ("r-2", "boom", "ErrorCode 200")


async def test_the_file_inbox_lists_without_consuming_and_removes_one_line(tmp_path: Path) -> None:
    path = tmp_path / "failed.jsonl"
    sink = FileSink(FileDestination(type="file", path=str(path)))
    await sink.send([Document(invocation_record()), Document({"n": 2}), Document(S3_EVENT, attributes={})])
    inbox = open_inbox(FileDestination(type="file", path=str(path)), "us-east-1", None, "m")
    assert isinstance(inbox, FileInbox)
    letters, total = await inbox.list(10)
    assert total == 3 and [letter.body for letter in letters][:2] == [invocation_record(), {"n": 2}]
    assert letters[2].attributes == {} and letters[2].body == S3_EVENT  # a dead letter's line
    assert (await inbox.list(10))[0] == letters  # ids are stable; nothing consumed
    taken = await inbox.take([letters[1].id, "missing"], 10)
    assert list(taken) == [letters[1].id]
    # a write that comes while the file is rewritten is kept
    await asyncio.gather(inbox.remove(taken[letters[1].id]), sink.send([Document({"n": 4})]))
    left = [json.loads(line) for line in path.read_text().splitlines()]
    assert left[:2] == [invocation_record(), {"Body": S3_EVENT, "MessageAttributes": {}}] and {"n": 4} in left
    assert len(left) == 3


async def test_an_empty_or_missing_file_has_nothing(tmp_path: Path) -> None:
    inbox = FileInbox(tmp_path / "none.jsonl")
    assert await inbox.list(5) == ([], 0)
    assert await inbox.take(["x"], 1) == {}
