"""Every event shape the hub emits, as `hub events` prints it and as the connectors render records, parsed by the
Powertools parser models that Lambda handlers use (tests/event_models.py). The events rendered from records read
from real brokers are checked in tests/integration/test_event_models.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from aws_lambda_powertools.utilities.data_classes.rabbit_mq_event import RabbitMQEvent
from aws_lambda_powertools.utilities.parser import models
from pydantic import ValidationError

from connectors.kafka.config import KafkaConfig
from connectors.kafka.events import kafka_records
from connectors.kafka.source import KafkaSource
from connectors.schedule.source import ScheduleConfig, ScheduleSource
from hub import registry
from hub.checkpoints import MemoryStore
from hub.source import SourceContext
from tests.event_models import MODELS, NO_MODEL, conforms, undeclared
from tests.helpers import MovableClock

CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance" / "events"
CLUSTER_ARN = "arn:aws:kafka:eu-west-1:123456789012:cluster/orders/751d2973-a626-431c-9d4e-d7975eb44dd7-2"
T0 = datetime(2026, 3, 7, 12, 0, tzinfo=UTC).timestamp()


def sample(source: str, variant: str | None) -> Any:
    spec = registry.get(source)
    return spec.sample_event() if variant is None else spec.sample_variants[variant]()


def test_every_source_and_variant_has_a_model_or_a_reason_for_none() -> None:
    """A new connector or variant fails here until its event is checked against a model (or the reason why no
    model applies is written down)."""
    emitted = {(spec.type, None) for spec in registry.all_specs(installed_only=True)}
    emitted |= {(spec.type, v) for spec in registry.all_specs(installed_only=True) for v in spec.sample_variants}
    assert emitted - set(MODELS) == {(name, None) for name in NO_MODEL}


@pytest.mark.parametrize(("source", "variant"), sorted(MODELS, key=str))
def test_hub_events_samples_parse_with_the_powertools_model(source: str, variant: str | None) -> None:
    conforms(MODELS[source, variant], sample(source, variant))


def test_the_check_fails_on_a_missing_key_a_wrong_literal_and_a_key_aws_does_not_send() -> None:
    event = sample("kafka", "msk")
    with pytest.raises(ValidationError, match="eventSourceArn"):
        conforms(models.KafkaMskEventModel, {k: v for k, v in event.items() if k != "eventSourceArn"})
    with pytest.raises(ValidationError, match="eventSource"):
        conforms(models.KafkaMskEventModel, sample("kafka", None) | {"eventSourceArn": CLUSTER_ARN})
    planted = sample("sqs", None)
    planted["Records"][0]["attributes"]["Invented"] = "1"
    assert undeclared(models.SqsModel, planted) == ["Records.0.attributes.Invented"]
    with pytest.raises(AssertionError, match="Invented"):
        conforms(models.SqsModel, planted)


@pytest.mark.parametrize(
    ("file", "model"),
    [
        ("sqs-event.json", models.SqsModel),
        ("kinesis-event.json", models.KinesisDataStreamModel),
        ("dynamodb-event.json", models.DynamoDBStreamModel),
        ("s3-event.json", models.S3Model),
        ("scheduled-event.json", models.EventBridgeModel),
        ("kafka-event.json", models.KafkaMskEventModel),
    ],
)
def test_the_models_accept_awss_own_samples(file: str, model: type[models.SqsModel]) -> None:
    """The check is no stricter than AWS: its own sample events pass it."""
    conforms(model, json.loads((CONFORMANCE / file).read_text()))


def test_the_rabbitmq_sample_reads_through_powertools_rabbitmq_data_class() -> None:
    event = RabbitMQEvent(sample("rabbitmq", None))
    assert event.event_source == "aws:rmq" and event.event_source_arn.startswith("arn:aws:mq:")
    ((key, messages),) = event.rmq_messages_by_queue.items()
    assert key == "orders::/"
    (message,) = messages
    properties = message.basic_properties
    read = [getattr(properties, name) for name, value in vars(type(properties)).items() if isinstance(value, property)]
    assert len(read) == 15 and properties.body_size == 26
    assert message.json_data == {"item": "book", "qty": 2} and message.redelivered is False


# ---- events the connectors render from records, without a broker -------------------------------------------------


def consumer_records(topic: str, partition: int) -> list[ConsumerRecord[bytes, bytes]]:
    """What aiokafka hands the source: a keyed JSON record with a header of negative bytes, a key-less text record,
    a tombstone (no value)."""
    base = {"topic": topic, "partition": partition, "timestamp_type": 0, "checksum": None, "headers": []}
    return [
        ConsumerRecord(
            **{**base, "headers": [("trace", bytes([1, 200, 255]))]},
            offset=7,
            timestamp=1_772_884_800_000,
            key=b"order-1",
            value=b'{"n": 1}',
            serialized_key_size=7,
            serialized_value_size=8,
        ),
        ConsumerRecord(
            **base,
            offset=8,
            timestamp=1_772_884_800_001,
            key=None,
            value=b"plain",
            serialized_key_size=-1,
            serialized_value_size=5,
        ),
    ]


def kafka_source(cluster_arn: str | None) -> KafkaSource:
    config = KafkaConfig(
        type="kafka",
        bootstrap_servers="b-1:9092,b-2:9092",
        topic="orders",
        starting_position="LATEST",
        cluster_arn=cluster_arn,
    )
    return KafkaSource(
        config, SourceContext(mapping="orders", store=MemoryStore(), region="eu-west-1", account_id="1" * 12)
    )


def test_kafka_events_rendered_from_consumer_records_parse_as_self_managed_and_as_msk() -> None:
    records = kafka_records(consumer_records("orders", 3), "orders-3", "orders", 3)
    self_managed = conforms(models.KafkaSelfManagedEventModel, kafka_source(None).render(records, 1))
    msk_event = kafka_source(CLUSTER_ARN).render(records, 1)
    msk = conforms(models.KafkaMskEventModel, msk_event)
    assert list(msk_event) == ["eventSource", "eventSourceArn", "bootstrapServers", "records"]
    assert msk.eventSourceArn == CLUSTER_ARN  # type: ignore[attr-defined]
    for parsed in (self_managed, msk):
        (partition,) = parsed.records.values()  # type: ignore[attr-defined]
        assert parsed.bootstrapServers == ["b-1:9092", "b-2:9092"]  # type: ignore[attr-defined]
        assert [r.value for r in partition] == ['{"n": 1}', "plain"]
        assert partition[0].key == b"order-1" and partition[1].key is None
        assert partition[0].headers == [{"trace": bytes([1, 200, 255])}]


def test_msk_failure_records_name_the_cluster_as_aws_does() -> None:
    records = kafka_records(consumer_records("orders", 0), "orders-0", "orders", 0)
    msk = kafka_source(CLUSTER_ARN).batch_info(records)["KafkaBatchInfo"]
    assert list(msk) == ["batchSize", "eventSourceArn", "bootstrapServers", "payloadSize", "recordsInfo"]
    assert msk["eventSourceArn"] == CLUSTER_ARN and msk["bootstrapServers"] == "b-1:9092,b-2:9092"
    assert msk["payloadSize"] == len(json.dumps(kafka_source(CLUSTER_ARN).render(records, 1), separators=(",", ":")))
    self_managed = kafka_source(None).batch_info(records)["KafkaBatchInfo"]
    assert "eventSourceArn" not in self_managed and self_managed["recordsInfo"] == msk["recordsInfo"]


def test_a_cluster_arn_that_is_not_an_msk_arn_is_refused() -> None:
    base = {"type": "kafka", "bootstrap_servers": "b:9092", "topic": "t", "starting_position": "LATEST"}
    assert KafkaConfig.model_validate({**base, "cluster_arn": CLUSTER_ARN}).cluster_arn == CLUSTER_ARN
    vpc = "arn:aws:kafka:eu-west-1:123456789012:vpc-connection/123456789012/orders/abc-1"
    assert KafkaConfig.model_validate({**base, "cluster_arn": vpc}).cluster_arn == vpc
    for wrong in (
        "orders",
        "arn:aws:kinesis:eu-west-1:123456789012:stream/orders",
        "arn:aws:kafka:eu-west-1:1:cluster/x",
    ):
        with pytest.raises(ValidationError, match="MSK cluster ARN"):
            KafkaConfig.model_validate({**base, "cluster_arn": wrong})


async def fire(**config: Any) -> tuple[ScheduleSource, Any]:
    """The first fire of a schedule (rate(1 minute) from T0, named `nightly`), rendered for attempt 1."""
    cfg = ScheduleConfig.model_validate({"type": "schedule", "expression": "rate(1 minute)", **config})
    context = SourceContext(mapping="nightly", store=MemoryStore(), region="eu-west-1", account_id="123456789012")
    context.clock = MovableClock(T0)
    source = ScheduleSource(cfg, context)
    await source.open()
    records = await source.read(1, None)
    return source, source.render(records, 1)


async def test_a_rule_sends_the_scheduled_event_exactly() -> None:
    source, event = await fire()
    assert source.config.service == "rule"
    parsed = conforms(models.EventBridgeModel, event)
    sample = json.loads((CONFORMANCE / "scheduled-event.json").read_text())
    assert list(event) == list(sample)  # AWS's key order too
    assert event["source"] == "aws.events" and event["detail"] == {} and parsed.detail == {}  # type: ignore[attr-defined]
    assert event["time"] == "2026-03-07T12:01:00Z" and event["account"] == "123456789012"
    assert event["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/nightly"]


async def test_scheduler_without_input_sends_its_own_scheduled_event_with_detail_as_a_string() -> None:
    _, event = await fire(service="scheduler")
    conforms(models.EventBridgeModel, event)
    assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
    assert event["detail"] == "{}"  # a string: Scheduler sends it so (Powertools turns it into {} for this source)
    assert event["resources"] == ["arn:aws:scheduler:eu-west-1:123456789012:schedule/default/nightly"]
    assert event["time"] == "2026-03-07T12:01:00Z"


async def test_input_is_substituted_for_scheduler_and_delivered_as_it_is_for_a_rule() -> None:
    text = '{"job": "nightly", "at": "<aws.scheduler.scheduled-time>", "attempt": <aws.scheduler.attempt-number>}'
    source, event = await fire(input=text)
    assert source.config.service == "scheduler"  # input alone means Scheduler, as before `service` existed
    assert event == {"job": "nightly", "at": "2026-03-07T12:01:00Z", "attempt": 1}  # JSON text arrives parsed
    _, event = await fire(service="rule", input={"at": "<aws.scheduler.scheduled-time>"})
    assert event == {"at": "<aws.scheduler.scheduled-time>"}  # a rule's Input is constant: nothing substituted
    _, event = await fire(service="rule", input='"hello"')
    assert event == "hello"


def test_a_string_input_that_is_not_json_is_refused() -> None:
    with pytest.raises(ValidationError, match="JSON text"):
        ScheduleConfig.model_validate({"type": "schedule", "expression": "rate(1 minute)", "input": "hello"})
    with pytest.raises(ValidationError, match="service"):
        ScheduleConfig.model_validate({"type": "schedule", "expression": "rate(1 minute)", "service": "cron"})
