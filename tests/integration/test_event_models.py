"""Events rendered from records read from real brokers (and, for folders and schedules, the events functions of a
real hub process receive), parsed by the Powertools parser models Lambda handlers use (tests/event_models.py).

Each source is fed the awkward cases: keys and no keys, headers with bytes above 127, values that are not JSON,
binary attributes, FIFO attributes, deletes, several record kinds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.rabbit_mq_event import RabbitMQEvent
from aws_lambda_powertools.utilities.parser import models
from pydantic import ValidationError

from connectors.s3 import CONNECTOR as S3
from connectors.s3 import S3Config
from hub.checkpoints import MemoryStore
from hub.source import SourceContext
from tests.event_models import conforms
from tests.fixtures_aws import (
    REGION,
    boto,
    connection,
    create_bucket,
    create_queue,
    create_stream,
    create_table,
    put_records,
)
from tests.fixtures_kafka import create_topic_async, produce_async, unique
from tests.fixtures_rabbitmq import Broker
from tests.helpers import HubProcess, read_jsonl, read_n, running, wait_for
from tests.integration.test_dynamodb import ddb_source, put
from tests.integration.test_kafka import make_source as kafka_source
from tests.integration.test_kinesis import kinesis_source
from tests.integration.test_rabbitmq import make_source as rabbitmq_source
from tests.integration.test_rabbitmq import read_n as rabbitmq_read_n
from tests.integration.test_s3 import poll_source, read_keys
from tests.integration.test_sqs import create_fifo_queue, sqs_source

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance" / "events"
CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/orders/751d2973-a626-431c-9d4e-d7975eb44dd7-2"


async def test_kafka_events_parse_as_self_managed_and_as_msk(tansu: str) -> None:
    topic = unique("t")
    await create_topic_async(tansu, topic, 1)
    await produce_async(
        tansu,
        topic,
        [
            (0, b"k0", b'{"n": 0}', [("trace", bytes([1, 200, 255])), ("empty", b"")]),
            (0, None, b"not json", []),
            (0, b"gone", None, []),  # a tombstone
        ],
    )
    for cluster_arn, model in ((None, models.KafkaSelfManagedEventModel), (CLUSTER_ARN, models.KafkaMskEventModel)):
        source = kafka_source(tansu, topic, cluster_arn=cluster_arn, consumer_group_id=unique("g"))
        async with running(source) as run:
            records = await read_n(await run.lane(f"{topic}-0", timeout=15), 3)
            event = source.render(records[:2], 1)
            parsed: Any = conforms(model, event)
            info = source.batch_info(records)["KafkaBatchInfo"]
            tombstone = source.render(records[2:], 1)
        partition = parsed.records[f"{topic}-0"]
        assert [r.value for r in partition] == ['{"n": 0}', "not json"]
        assert partition[0].headers == [{"trace": bytes([1, 200, 255])}, {"empty": b""}]
        assert parsed.bootstrapServers == [tansu]
        assert info.get("eventSourceArn") == cluster_arn and event.get("eventSourceArn") == cluster_arn
        # Lambda sends a tombstone's value as null; Powertools for Python's model still demands a string (its
        # TypeScript sibling was fixed for the null values Lambda sends: powertools-lambda-typescript#4988).
        assert tombstone["records"][f"{topic}-0"][0]["value"] is None
        with pytest.raises(ValidationError) as rejected:
            model.model_validate(tombstone)
        assert [e["loc"][-1] for e in rejected.value.errors()] == ["value"]


async def test_sqs_events_parse_standard_and_fifo(moto: str) -> None:
    sqs = boto(moto, "sqs")
    queue = create_queue(moto)
    attributes = {
        "text": {"DataType": "String", "StringValue": "value"},
        "number": {"DataType": "Number", "StringValue": "12.5"},
        "bytes": {"DataType": "Binary", "BinaryValue": bytes([0, 200, 255])},
    }
    sqs.send_message(QueueUrl=queue, MessageBody='{"n": 1}', MessageAttributes=attributes)
    sqs.send_message(QueueUrl=queue, MessageBody="plain text")
    fifo = create_fifo_queue(moto)
    sqs.send_message(QueueUrl=fifo, MessageBody='{"n": 2}', MessageGroupId="g1")
    for url, count in ((queue, 2), (fifo, 1)):
        source = sqs_source(moto, url)
        async with running(source) as run:
            records = await read_n(await run.lane(), count)
            parsed: Any = conforms(models.SqsModel, source.render(records, 1))
        assert {r.body for r in parsed.Records} <= {'{"n": 1}', "plain text", '{"n": 2}'}
    assert parsed.Records[0].attributes.MessageGroupId == "g1"


async def test_kinesis_events_parse(moto: str) -> None:
    stream = create_stream(moto)
    put_records(moto, stream, [("a", b'{"n": 1}'), ("b", bytes([0, 200, 255]))])
    source = kinesis_source(moto, stream, MemoryStore())
    async with running(source) as run:
        records = await read_n(await run.lane(), 2)
        parsed: Any = conforms(models.KinesisDataStreamModel, source.render(records, 1))
    assert [r.kinesis.data for r in parsed.Records] == [b'{"n": 1}', bytes([0, 200, 255])]


async def test_dynamodb_stream_events_parse_inserts_modifies_and_removes(moto: str) -> None:
    table = create_table(moto)
    put(
        moto,
        table,
        "a",
        n={"N": "1"},
        blob={"B": bytes([0, 200])},
        tags={"SS": ["x", "y"]},
        m={"M": {"k": {"BOOL": True}}},
    )
    put(moto, table, "a", n={"N": "2"})
    boto(moto, "dynamodb").delete_item(TableName=table, Key={"id": {"S": "a"}})
    source = ddb_source(moto, table, MemoryStore())
    async with running(source) as run:
        records = await read_n(await run.lane(), 3)
        parsed: Any = conforms(models.DynamoDBStreamModel, source.render(records, 1))
    assert [r.eventName for r in parsed.Records] == ["INSERT", "MODIFY", "REMOVE"]


async def test_s3_notifications_and_polled_objects_parse(moto: str) -> None:
    """Notifications pass through as S3 sent them (moto's lack fields S3 sends, so the queue gets AWS's own sample
    notification, after S3's test event); polled objects are shaped by the hub."""
    s3, sqs = boto(moto, "s3"), boto(moto, "sqs")
    bucket, queue = create_bucket(moto), create_queue(moto)
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-01T00:00:00.000Z", "Bucket": bucket}
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(test_event))
    notification = json.loads((CONFORMANCE / "s3-event.json").read_text())
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(notification))
    config = S3Config.model_validate({"type": "s3", "queue_url": queue, "wait_time": 1, "connection": connection(moto)})
    source = S3.build(config, SourceContext(mapping="uploads", store=MemoryStore(), region=REGION, account_id="1" * 12))
    async with running(source) as run:
        records = await read_n(await run.lane(), 1)
        parsed: Any = conforms(models.S3Model, source.render(records, 1))
    assert parsed.Records[0].s3.object.key == notification["Records"][0]["s3"]["object"]["key"]
    s3.put_object(Bucket=bucket, Key="a b/Happy Face.txt", Body=b"hello")
    polled = poll_source(moto, bucket, MemoryStore(), starting_position="TRIM_HORIZON")
    await polled.open()
    try:
        records = await read_keys(polled, 1)
        parsed = conforms(models.S3Model, polled.render(records, 1))
    finally:
        await polled.close()
    assert parsed.Records[0].s3.object.key == "a+b/Happy+Face.txt" and parsed.Records[0].s3.object.size == 5


async def test_rabbitmq_events_read_through_powertools_rabbitmq_data_class(broker: Broker) -> None:
    queue = await broker.queue()
    await broker.publish(queue, b'{"n": 1}', content_type="application/json", headers={"h": "v", "n": 1}, priority=3)
    await broker.publish(queue, b"not json")
    source = rabbitmq_source(queue)
    await source.open()
    try:
        records = await rabbitmq_read_n(source, 2)
        event = RabbitMQEvent(source.render(records, 1))
    finally:
        await source.close()
    assert event.event_source == "aws:rmq"
    (messages,) = event.rmq_messages_by_queue.values()
    for message in messages:
        properties = message.basic_properties
        names = [name for name, value in vars(type(properties)).items() if isinstance(value, property)]
        read = {name: getattr(properties, name) for name in names}  # a property AWS sends and the hub not: KeyError
        assert len(read) == 15 and read["body_size"] == len(message.decoded_data.encode())
    assert messages[0].json_data == {"n": 1} and messages[1].decoded_data == "not json"
    assert messages[0].basic_properties.headers == {"h": {"bytes": list(b"v")}, "n": 1}


def test_files_and_schedules_as_a_real_hub_delivers_them(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    schedule = {"type": "schedule", "expression": "rate(1 second)"}
    mappings: list[dict[str, Any]] = [
        {
            "name": "inbox",
            "function": "record",
            "source": {"type": "files", "path": str(tmp_path / "in"), "settle_time": "100ms"},
        },
        {"name": "rule", "function": "record", "source": schedule},
        {"name": "scheduler", "function": "record", "source": {**schedule, "service": "scheduler"}},
    ]
    config = {
        "checkpoints": "memory://",
        "shutdown_grace": "5s",
        "account_id": "123456789012",
        "functions": {"record": {"handler": "functions.recorder.record", "environment": {"RECORDER_OUT": str(out)}}},
        "mappings": mappings,
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / "Happy Face.jpg").write_bytes(b"face")

        def kinds() -> set[str]:
            return {e["event"].get("source") or e["event"]["Records"][0]["eventSource"] for e in read_jsonl(out)}

        wait_for(lambda: kinds() >= {"aws:s3", "aws.events", "aws.scheduler"}, timeout=20, what="every kind of event")
        assert hub.stop() == 0
    for entry in read_jsonl(out):
        event = entry["event"]
        parsed: Any = conforms(models.S3Model if "Records" in event else models.EventBridgeModel, event)
        if event.get("source") == "aws.scheduler":
            assert event["detail"] == "{}" and parsed.detail == {}
            assert event["resources"] == ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/scheduler"]
        elif event.get("source") == "aws.events":
            assert event["detail"] == {} and event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/rule"]
        else:
            assert json.dumps(event).count("Happy+Face.jpg") == 1
