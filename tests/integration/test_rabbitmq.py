"""The `rabbitmq` connector against the machine's RabbitMQ (127.0.0.1:5672, guest/guest): the source in process,
then the hub as a real process. Every test uses queues of its own, deleted afterwards. The scenarios every connector
passes (restart, broker cut, SIGKILL...) are in tests/connectors/."""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from connectors.rabbitmq import CONNECTOR, RabbitMQConfig, RabbitMQSource, amqp_timestamp, delivery_count
from hub.checkpoints import MemoryStore
from hub.records import Outcome, Record
from hub.source import LaneEnded, SourceContext
from tests.fixtures_rabbitmq import AMQP_URL, Broker, SyncBroker
from tests.helpers import ROOT, HubProcess, read_jsonl, shape, wait_for

pytestmark = pytest.mark.usefixtures("rabbitmq_server")
RMQ_SAMPLE = json.loads((ROOT / "tests/conformance/events/rabbitmq-event.json").read_text())


def make_source(queue: str, max_in_flight: int = 1, **settings: Any) -> RabbitMQSource:
    config = RabbitMQConfig.model_validate({"type": "rabbitmq", "url": AMQP_URL, "queue": queue, **settings})
    context = SourceContext("m", MemoryStore(), "eu-west-1", "000000000000", max_in_flight=max_in_flight)
    return RabbitMQSource(config, context)


async def read_n(source: RabbitMQSource, n: int, timeout: float = 5.0) -> list[Record]:
    out: list[Record] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.extend(await source.read(n - len(out), 0.5))
    return out


# ---- the source in process -----------------------------------------------------------------------------------


async def test_read_renders_amazon_mq_events_and_settle_acks(broker: Broker) -> None:
    queue = await broker.queue()
    body = b'{"timeout":0,"data":"CZrmf0Gw8Ov4bqLQxD4E"}'
    await broker.publish(
        queue,
        body,
        content_type="text/plain",
        headers={"header1": "value1", "header2": bytearray(b"value2"), "numberInHeader": 10},
        delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        priority=4,
        expiration=60,
        timestamp=datetime(1970, 1, 1, 0, 33, 41, tzinfo=UTC),
        user_id="guest",
        message_id="m-1",
    )
    await broker.publish(queue, b"not json")
    source = make_source(queue)
    await source.open()
    try:
        async for lane in source.lanes():
            assert lane is source
            break
        assert (source.key, source.ordered) == (f"{queue}::/", False)
        records = await read_n(source, 2)
        event = source.render(records, 1)
        sample_message = RMQ_SAMPLE["rmqMessagesByQueue"]["test::/"][0]
        message = event["rmqMessagesByQueue"][f"{queue}::/"][0]
        assert shape(message) | {"basicProperties": None} == shape(sample_message) | {"basicProperties": None}
        assert set(message["basicProperties"]) == set(sample_message["basicProperties"])
        assert event["eventSource"] == "aws:rmq"
        assert event["eventSourceArn"] == "arn:aws:mq:eu-west-1:000000000000:broker:127.0.0.1:5672"
        props = message["basicProperties"]
        assert props["headers"] == {
            "header1": {"bytes": list(b"value1")},
            "header2": {"bytes": list(b"value2")},
            "numberInHeader": 10,
        }
        assert props["timestamp"] == "Jan 1, 1970, 12:33:41 AM"
        assert (props["expiration"], props["deliveryMode"], props["priority"]) == ("60000", 1, 4)
        assert (props["contentType"], props["contentEncoding"], props["userId"]) == ("text/plain", None, "guest")
        assert props["bodySize"] == len(body)
        assert base64.b64decode(message["data"]) == body
        assert message["redelivered"] is False
        assert records[0].item_id == "m-1" and records[0].attempt == 1
        assert records[0].view()["data"] == {"timeout": 0, "data": "CZrmf0Gw8Ov4bqLQxD4E"}
        assert records[1].view()["data"] == "not json"
        assert event["rmqMessagesByQueue"][f"{queue}::/"][1]["basicProperties"]["headers"] == {}
        await source.settle(Outcome(succeeded=(records[0],), filtered=(records[1],)))
    finally:
        await source.close()
    assert await broker.count(queue) == 0


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_failed_messages_come_back_counted(broker: Broker, kind: str) -> None:
    queue = await broker.queue(kind)
    await broker.publish(queue, b"payload", message_id="only", headers={"keep": "me"})
    source = make_source(queue, redelivery_delay="50ms")
    await source.open()
    try:
        for attempt in (1, 2, 3):
            (record,) = await read_n(source, 1)
            assert (record.item_id, record.attempt) == ("only", attempt)
            message = source.render([record], attempt)["rmqMessagesByQueue"][f"{queue}::/"][0]
            assert message["redelivered"] is (attempt > 1)
            assert message["basicProperties"]["headers"]["keep"] == {"bytes": list(b"me")}
            await source.settle(Outcome(failed=(record,)))
        (record,) = await read_n(source, 1)
        assert base64.b64decode(record.payload["data"]) == b"payload"
        await source.settle(Outcome(given_up=(record,)))
        assert await source.read(10, 0.3) == []
    finally:
        await source.close()
    assert await broker.count(queue) == 0


async def test_delivery_limit_rejects_to_the_queues_dead_letter_exchange(broker: Broker) -> None:
    dead = await broker.queue()
    queue = await broker.queue(**{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    await broker.publish(queue, b"poison")
    source = make_source(queue, delivery_limit=2, redelivery_delay=0)
    await source.open()
    try:
        for _ in range(2):
            (record,) = await read_n(source, 1)
            await source.settle(Outcome(failed=(record,)))
        assert await source.read(10, 0.3) == []
    finally:
        await source.close()
    message = await wait_for_message(broker, dead)
    assert message.body == b"poison"
    assert message.headers is not None and message.headers["x-hub-receive-count"] == 1


async def wait_for_message(broker: Broker, queue: str) -> aio_pika.abc.AbstractIncomingMessage:
    async with asyncio.timeout(5):
        while (message := await broker.get(queue)) is None:
            await asyncio.sleep(0.05)
    return message


async def test_close_twice_missing_queue_and_a_lost_channel(broker: Broker) -> None:
    missing = make_source(f"hub-test-missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await missing.open()
    await missing.close()
    await missing.close()

    queue = await broker.queue()
    source = make_source(queue)
    await source.open()
    lanes = source.lanes()
    assert await anext(lanes) is source
    await source._channel.close()  # as the broker closing it would
    with pytest.raises(ConnectionError):
        await source.read(1, 1.0)
    with pytest.raises(ConnectionError):
        await anext(lanes)
    await source.close()

    await source.open()  # the mapping reopens it; then the queue is deleted under it
    lanes = source.lanes()
    assert await anext(lanes) is source
    await broker.channel.queue_delete(queue)
    with pytest.raises(ConnectionError, match="cancelled"):
        await source.read(1, 5.0)
    with pytest.raises(ConnectionError):
        await anext(lanes)
    await source.close()
    await source.close()
    with pytest.raises(LaneEnded):
        await source.read(1, 0.1)


def test_config_and_delivery_counts() -> None:
    with pytest.raises(ValueError, match="given twice"):
        RabbitMQConfig.model_validate({"type": "rabbitmq", "url": "amqp://u:p@h/", "password": "x", "queue": "q"})
    with pytest.raises(ValueError, match="declare"):
        RabbitMQConfig.model_validate({"type": "rabbitmq", "queue": "q", "queue_arguments": {"x": 1}})
    config = RabbitMQConfig.model_validate(
        {"type": "rabbitmq", "url": "amqp://bob:s3cret@mq:5673/prod%2Feu", "queue": "orders"}
    )
    assert config.vhost() == "prod/eu"
    assert config.connection_url() == "amqp://bob:s3cret@mq:5673/prod%2Feu"
    source = RabbitMQSource(config, SourceContext("m", MemoryStore(), "us-east-1", "000000000000", max_in_flight=3))
    assert (source.key, source.prefetch) == ("orders::prod/eu", 300)
    assert "s3cret" not in source.arn + source.where
    assert delivery_count({}, False) == 1
    assert delivery_count({}, True) == 2
    assert delivery_count({"x-delivery-count": 0}, False) == 1
    assert delivery_count({"x-delivery-count": 4}, True) == 5
    assert delivery_count({"x-hub-receive-count": 3}, False) == 4
    assert amqp_timestamp(datetime(2024, 6, 10, 13, 5, 9, tzinfo=UTC)) == "Jun 10, 2024, 1:05:09 PM"
    assert all(field.description for name, field in RabbitMQConfig.model_fields.items() if name != "type")
    assert (CONNECTOR.family, CONNECTOR.data_key) == ("queue", "data")
    sample = CONNECTOR.sample_event()
    assert set(sample) == set(RMQ_SAMPLE)
    ((message,),) = sample["rmqMessagesByQueue"].values()
    assert set(message["basicProperties"]) == set(RMQ_SAMPLE["rmqMessagesByQueue"]["test::/"][0]["basicProperties"])


# ---- the hub as a real process -------------------------------------------------------------------------------

HANDLERS = '''
import base64, json, os

def _write(event):
    with open(os.environ["RECORDER_OUT"], "a") as f:
        f.write(json.dumps({"event": event}) + "\\n")

def partial(event, context):
    """Record the batch; report the messages whose JSON body has `fail` as failed items (by messageId)."""
    _write(event)
    (messages,) = event["rmqMessagesByQueue"].values()
    failed = [m["basicProperties"]["messageId"] for m in messages if json.loads(base64.b64decode(m["data"]))["fail"]]
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
'''


def hub_config(queue: str, handler: str, **mapping: Any) -> dict[str, Any]:
    source = {"type": "rabbitmq", "url": AMQP_URL, "queue": queue, "redelivery_delay": "100ms"}
    return {
        "checkpoints": "memory://",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": handler, "timeout": "10s"}},
        "mappings": [{"name": "rmq-e2e", "function": "fn", "source": source, **mapping}],
    }


def deliveries(out: Path) -> list[dict[str, Any]]:
    return [m for entry in read_jsonl(out) for ms in entry["event"]["rmqMessagesByQueue"].values() for m in ms]


def test_partial_batch_failure_acks_exactly_the_others_and_the_failing_one_reaches_the_destination(
    tmp_path: Path, sync_broker: SyncBroker
) -> None:
    (tmp_path / "rmq_handlers.py").write_text(textwrap.dedent(HANDLERS))
    out, dlq = tmp_path / "calls.jsonl", tmp_path / "dlq.jsonl"
    queue = sync_broker.queue()
    sync_broker.publish_many(
        queue, [(json.dumps({"n": i, "fail": i == 3}).encode(), {"message_id": f"m{i}"}) for i in range(6)]
    )
    config = hub_config(
        queue,
        "rmq_handlers.partial",
        batch_size=10,
        maximum_batching_window="100ms",
        function_response_types=["ReportBatchItemFailures"],
        max_receive_count=3,
        destination_config={"on_failure": {"type": "file", "path": str(dlq)}},
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: read_jsonl(dlq), 15, "the failing message in the destination")
        seen = deliveries(out)
        good = [m["basicProperties"]["messageId"] for m in seen if m["basicProperties"]["messageId"] != "m3"]
        assert sorted(good) == ["m0", "m1", "m2", "m4", "m5"]  # each acked after its one delivery
        bad = [m["redelivered"] for m in seen if m["basicProperties"]["messageId"] == "m3"]
        assert bad == [False, True, True]
        (failure,) = read_jsonl(dlq)
        assert failure["requestContext"]["condition"] == "MaxReceiveCountExceeded"
        assert failure["requestContext"]["approximateInvokeCount"] == 3
        assert hub.stop() == 0
        assert "guest:guest" not in hub.log()
    assert sync_broker.count(queue) == 0
