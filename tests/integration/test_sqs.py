"""The `sqs` connector against moto_server: in-process (event shape, delete, redelivery, the visibility heartbeat,
FIFO group order) and end to end with the hub as a real process (partial batch responses, the redrive DLQ, the
mapping's destination, FIFO). The scenarios every connector passes (restart, broker cut, SIGKILL...) are in
tests/connectors/."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.sqs import CONNECTOR, GroupLane, SqsConfig, SqsSource
from hub.checkpoints import MemoryStore
from hub.records import Outcome, Record
from hub.source import SourceContext
from tests.fixtures_aws import REGION, boto, connection, create_queue, unique
from tests.helpers import ROOT, HubProcess, read_jsonl, read_n, running, shape, wait_for

SAMPLE = json.loads((ROOT / "tests/conformance/events/sqs-event.json").read_text())["Records"][0]
ACCOUNT = "123456789012"  # moto's account


def sqs_source(url: str, queue_url: str, max_in_flight: int = 5, **settings: Any) -> SqsSource:
    config = SqsConfig.model_validate(
        {"type": "sqs", "queue_url": queue_url, "connection": connection(url), "wait_time": 1, **settings}
    )
    context = SourceContext(
        mapping="orders", store=MemoryStore(), region=REGION, account_id=ACCOUNT, max_in_flight=max_in_flight
    )
    source = CONNECTOR.build(config, context)
    assert isinstance(source, SqsSource)
    return source


def depth(url: str, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = boto(url, "sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


def create_fifo_queue(url: str, **attributes: str) -> str:
    name = unique("queue") + ".fifo"
    attrs = {"FifoQueue": "true", "ContentBasedDeduplication": "true", **attributes}
    return str(boto(url, "sqs").create_queue(QueueName=name, Attributes=attrs)["QueueUrl"])


def body(record: Record) -> Any:
    return json.loads(record.payload["body"])


# ---- in-process ----------------------------------------------------------------------------------------------


async def test_messages_arrive_in_the_sqs_event_shape_and_settled_ones_are_deleted(moto: str) -> None:
    sqs = boto(moto, "sqs")
    queue = create_queue(moto)
    attributes = {
        "Attribute1": {"DataType": "String", "StringValue": "AttributeValue1"},
        "Attribute2": {"DataType": "Number", "StringValue": "123"},
        "Attribute3": {"DataType": "Binary", "BinaryValue": b"1100"},
    }
    for n in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"n": n}), MessageAttributes=attributes)
    async with running(sqs_source(moto, queue)) as run:
        lane = await run.lane()
        assert not lane.ordered
        records = await read_n(lane, 3)
        assert sorted(body(r)["n"] for r in records) == [0, 1, 2]
        payload = records[0].payload
        assert shape({**payload, "messageAttributes": {}}) == shape({**SAMPLE, "messageAttributes": {}})
        assert set(SAMPLE["attributes"]) <= set(payload["attributes"])
        for name, sample in SAMPLE["messageAttributes"].items():
            assert set(payload["messageAttributes"][name]) == set(sample), name
        assert payload["messageAttributes"]["Attribute3"]["binaryValue"] == "MTEwMA=="  # base64, as AWS's sample
        assert payload["eventSourceARN"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.rsplit('/', 1)[-1]}"
        assert payload["awsRegion"] == REGION and payload["eventSource"] == "aws:sqs"
        assert records[0].item_id == payload["messageId"] and records[0].attempt == 1
        view = records[0].view()
        assert view["body"] == body(records[0]) and "messageAttributes" in view and "receiptHandle" in view
        assert shape(CONNECTOR.sample_event()["Records"][0]) == shape({**SAMPLE, "messageAttributes": {}}) | {
            "messageAttributes": shape({"Attribute1": SAMPLE["messageAttributes"]["Attribute1"]})
        }
        await lane.settle(Outcome(succeeded=tuple(records[:2]), filtered=tuple(records[2:])))
        assert depth(moto, queue) == (0, 0)


async def test_a_failed_message_waits_out_its_visibility_timeout_unless_a_backoff_is_set(moto: str) -> None:
    sqs = boto(moto, "sqs")
    queue = create_queue(moto)
    sqs.send_message(QueueUrl=queue, MessageBody="again")
    async with running(sqs_source(moto, queue, visibility_timeout=2)) as run:
        lane = await run.lane()
        [record] = await read_n(lane, 1)
        started = time.monotonic()
        await lane.settle(Outcome(failed=(record,)))
        assert depth(moto, queue) == (0, 1), "hidden until its visibility timeout"
        [again] = await read_n(lane, 1, timeout=6)
        assert time.monotonic() - started > 1.5
        assert again.item_id == record.item_id and again.attempt == 2
        assert again.payload["attributes"]["ApproximateReceiveCount"] == "2"
        await lane.settle(Outcome(failed=(again,)))
    async with running(sqs_source(moto, queue, visibility_timeout=30, visibility_backoff=0)) as run:
        lane = await run.lane()
        [third] = await read_n(lane, 1, timeout=6)
        assert third.attempt == 3
        started = time.monotonic()
        await lane.settle(Outcome(failed=(third,)))
        [fourth] = await read_n(lane, 1)
        assert time.monotonic() - started < 5, "a backoff of 0 makes it visible at once, not after 30 s"
        await lane.settle(Outcome(succeeded=(fourth,)))
    assert depth(moto, queue) == (0, 0)


async def test_visibility_is_extended_while_a_slow_batch_runs_so_no_one_else_gets_it(moto: str) -> None:
    sqs = boto(moto, "sqs")
    queue = create_queue(moto)
    sqs.send_message(QueueUrl=queue, MessageBody="slow")
    stolen: list[Any] = []

    def compete() -> None:  # another consumer of the same queue, polling while our function "runs"
        deadline = time.monotonic() + 5.0  # 2.5 visibility timeouts
        while time.monotonic() < deadline:
            stolen.extend(boto(moto, "sqs").receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", []))
            time.sleep(0.2)

    async with running(sqs_source(moto, queue, visibility_timeout=2)) as run:
        lane = await run.lane()
        [record] = await read_n(lane, 1)
        await asyncio.to_thread(compete)
        await lane.settle(Outcome(succeeded=(record,)))
    assert stolen == []
    assert depth(moto, queue) == (0, 0)


async def test_a_message_received_again_while_in_flight_is_not_delivered_twice(moto: str) -> None:
    sqs = boto(moto, "sqs")
    queue = create_queue(moto)
    sqs.send_message(QueueUrl=queue, MessageBody="lapsed")
    source = sqs_source(moto, queue, visibility_timeout=1)
    async with running(source) as run:
        lane = await run.lane()
        [record] = await read_n(lane, 1)
        heartbeat = source.queue._heartbeat
        assert heartbeat is not None
        heartbeat.cancel()  # as if the extensions failed: the message becomes visible mid-invocation
        await asyncio.sleep(1.2)
        assert await lane.read(10, 1.5) == [], "received again, but it is still in flight here"
        held = source.queue.held[str(record.item_id)]
        assert held.receipt != record.payload["receiptHandle"] and held.attempt >= 2
        await lane.settle(Outcome(succeeded=(record,)))  # deleted with the newest receipt handle
    assert depth(moto, queue) == (0, 0)


async def test_fifo_groups_are_ordered_lanes_and_a_failure_keeps_its_group_in_order(moto: str) -> None:
    sqs = boto(moto, "sqs")
    queue = create_fifo_queue(moto)
    for n in range(5):
        for group in ("a", "b", "c"):
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"g": group, "n": n}), MessageGroupId=group)
    delivered: dict[str, list[list[int]]] = {"a": [], "b": [], "c": []}
    done: dict[str, list[int]] = {"a": [], "b": [], "c": []}

    async def consume(lane: GroupLane) -> None:
        assert lane.ordered
        while len(done[lane.key]) < 5:
            records = await lane.read(10, 0.5)
            if not records:
                continue
            ns = [body(r)["n"] for r in records]
            delivered[lane.key].append(ns)
            failed = tuple(r for r in records if lane.key == "a" and body(r)["n"] == 1 and r.attempt == 1)
            succeeded = tuple(r for r in records if r not in failed)
            # the function processed 2 and 3 after 1 failed: they are released with it, not deleted
            await lane.settle(Outcome(succeeded=succeeded, failed=failed))
            if failed:
                ns = ns[: ns.index(1)]
            done[lane.key].extend(ns)

    async with running(sqs_source(moto, queue, max_in_flight=2, visibility_backoff=0)) as run:
        lanes = [await run.lane(group) for group in ("a", "b", "c")]
        await asyncio.wait_for(asyncio.gather(*(consume(lane) for lane in lanes)), 15)
    assert done == {g: [0, 1, 2, 3, 4] for g in "abc"}
    for batches in delivered.values():
        for batch in batches:
            assert batch == sorted(batch)
    flat_a = [n for batch in delivered["a"] for n in batch]
    assert flat_a.count(1) == 2 and flat_a.index(1) < flat_a.index(2)
    assert depth(moto, queue) == (0, 0)


async def test_fifo_groups_in_flight_are_capped_at_max_concurrency(moto: str) -> None:
    sqs = boto(moto, "sqs")
    queue = create_fifo_queue(moto)
    for group in ("a", "b"):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"g": group, "n": 0}), MessageGroupId=group)
    async with running(sqs_source(moto, queue, max_in_flight=1)) as run:
        a, b = await run.lane("a"), await run.lane("b")
        [first] = await read_n(a, 1)
        assert await b.read(10, 0.3) == [], "b's message waits while a holds the only slot"
        await a.settle(Outcome(succeeded=(first,)))
        [second] = await read_n(b, 1)
        await b.settle(Outcome(succeeded=(second,)))
    assert depth(moto, queue) == (0, 0)


def test_config_wants_one_queue_and_a_long_poll_of_at_most_20s() -> None:
    with pytest.raises(ValidationError, match="exactly one of queue_url and queue_name"):
        SqsConfig.model_validate({"type": "sqs"})
    with pytest.raises(ValidationError):
        SqsConfig.model_validate({"type": "sqs", "queue_name": "q", "wait_time": "30s"})
    with pytest.raises(ValidationError):
        SqsConfig.model_validate({"type": "sqs", "queue_name": "q", "polling": 1})
    for name, field in SqsConfig.model_fields.items():
        assert field.description or name == "type", name


# ---- the hub as a process --------------------------------------------------------------------------------------


def hub_config(tmp: Path, url: str, mappings: list[dict[str, Any]]) -> dict[str, Any]:
    handlers = {"partial": "fail_marked_once", "fails": "always_fails", "slow": "slow"}
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {k: {"handler": f"functions.sqs_testing.{v}", "timeout": "10s"} for k, v in handlers.items()},
        "mappings": [
            {**m, "source": {"type": "sqs", "connection": connection(url), "wait_time": 1, **m["source"]}}
            for m in mappings
        ],
    }


def deliveries(out: Path) -> list[dict[str, Any]]:
    return [m for entry in read_jsonl(out) for m in entry["messages"]]


def send(url: str, queue: str, bodies: list[Any], **kwargs: Any) -> None:
    sqs = boto(url, "sqs")
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(j), "MessageBody": json.dumps(b), **kwargs} for j, b in enumerate(bodies[i : i + 10])]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)


def test_a_partial_batch_failure_deletes_exactly_the_others(tmp_path: Path, moto: str) -> None:
    queue = create_queue(moto)
    send(moto, queue, [{"n": n, "fail": n in (2, 5, 7)} for n in range(10)])
    out = tmp_path / "out.jsonl"
    mapping = {
        "function": "partial",
        "source": {"queue_url": queue, "visibility_backoff": 0, "wait_time": 20},
        "function_response_types": ["ReportBatchItemFailures"],
    }
    with HubProcess(tmp_path, hub_config(tmp_path, moto, [mapping]), {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: len(deliveries(out)) >= 13, 20, "10 deliveries and 3 redeliveries")
        wait_for(lambda: depth(moto, queue) == (0, 0), 10, "an empty queue")
        started = time.monotonic()
        assert hub.stop() == 0
        assert time.monotonic() - started < 5, "a stop does not wait for a 20 s long poll"
    seen = Counter(json.loads(m["body"])["n"] for m in deliveries(out))
    assert seen == Counter({n: 2 if n in (2, 5, 7) else 1 for n in range(10)})
    assert sorted(m["attempt"] for m in deliveries(out) if json.loads(m["body"])["fail"]) == [1, 1, 1, 2, 2, 2]


def test_an_always_failing_message_reaches_the_redrive_dlq_or_the_destination(tmp_path: Path, moto: str) -> None:
    sqs = boto(moto, "sqs")
    dlq = create_queue(moto)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    redriven = str(sqs.create_queue(QueueName=unique("queue"), Attributes={"RedrivePolicy": policy})["QueueUrl"])
    given_up = create_queue(moto)
    send(moto, redriven, [{"to": "dlq"}])
    send(moto, given_up, [{"to": "destination"}])
    out, failures = tmp_path / "out.jsonl", tmp_path / "failures.jsonl"
    mappings = [
        {"name": "redriven", "function": "fails", "source": {"queue_url": redriven, "visibility_backoff": 0}},
        {
            "name": "given-up",
            "function": "fails",
            "source": {"queue_url": given_up, "visibility_backoff": 0},
            "max_receive_count": 2,
            "destination_config": {"on_failure": {"type": "file", "path": str(failures)}},
        },
    ]
    with HubProcess(tmp_path, hub_config(tmp_path, moto, mappings), {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: read_jsonl(failures), 20, "a record at the destination")
        wait_for(lambda: depth(moto, dlq)[0] == 1, 20, "the message in the redrive DLQ")
        wait_for(lambda: depth(moto, given_up) == (0, 0), 10, "the given-up message deleted")
        assert hub.stop() == 0
    [record] = read_jsonl(failures)
    assert record["requestContext"]["condition"] == "MaxReceiveCountExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert json.loads(record["requestPayload"]["Records"][0]["body"]) == {"to": "destination"}
    [moved] = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert json.loads(moved["Body"]) == {"to": "dlq"}
    attempts = Counter(json.loads(m["body"])["to"] for m in deliveries(out))
    assert attempts == {"dlq": 2, "destination": 2}
    assert depth(moto, redriven) == (0, 0)


def test_fifo_through_the_hub_keeps_order_per_group(tmp_path: Path, moto: str) -> None:
    queue = create_fifo_queue(moto)
    sqs = boto(moto, "sqs")
    for n in range(6):
        for group in ("a", "b", "c"):
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"g": group, "n": n}), MessageGroupId=group)
    out = tmp_path / "out.jsonl"
    source = {"queue_url": queue, "wait_time": 20}
    mapping = {"function": "slow", "source": source, "max_concurrency": 2, "batch_size": 4}
    env = {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.02"}
    with HubProcess(tmp_path, hub_config(tmp_path, moto, [mapping]), env) as hub:
        hub.start()
        wait_for(lambda: len(deliveries(out)) >= 18, 20, "18 messages")
        started = time.monotonic()
        assert hub.stop() == 0
        assert time.monotonic() - started < 5, "a stop does not wait for a 20 s long poll"
    per_group: dict[str, list[int]] = {}
    for entry in read_jsonl(out):
        groups = {json.loads(m["body"])["g"] for m in entry["messages"]}
        assert len(groups) == 1, "a batch holds one message group"
        for m in entry["messages"]:
            item = json.loads(m["body"])
            per_group.setdefault(item["g"], []).append(item["n"])
    assert per_group == {g: list(range(6)) for g in "abc"}
    assert depth(moto, queue) == (0, 0)
