"""The lag each source tells of itself (hub.source.LagSource), against real brokers: it moves as a backlog grows
and drains. SQS (moto): the backlog and the age of the oldest message; Redis streams: the group's lag and the age
of its oldest entry not acknowledged; RabbitMQ: the ready messages; Kinesis (moto): the IteratorAge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aredis

from hub.records import Lag, Outcome
from hub.source import LagSource
from tests.fixtures_aws import boto, create_queue, create_stream, put_records
from tests.fixtures_rabbitmq import Broker
from tests.helpers import read_n, running
from tests.integration.test_kinesis import kinesis_source
from tests.integration.test_rabbitmq import make_source as rabbitmq_source
from tests.integration.test_redis_streams import make_source as redis_source
from tests.integration.test_redis_streams import unique
from tests.integration.test_sqs import sqs_source


async def lag_until(source: LagSource, key: str, condition: Callable[[Lag], bool], timeout: float = 20.0) -> Lag:
    """Ask the source for its lag until `key`'s satisfies `condition` (brokers count asynchronously)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = (await source.lag()).get(key)
        if last is not None and condition(last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"the lag of {key} is still {last}")


async def test_sqs_tells_its_backlog_and_the_age_of_its_oldest_message(moto: str) -> None:
    queue = create_queue(moto)
    sqs = boto(moto, "sqs")
    source = sqs_source(moto, queue)
    assert await source.lag() == {}  # not open
    async with running(source) as run:
        name = queue.rsplit("/", 1)[-1]
        assert await source.lag() == {name: Lag(backlog=0, oldest_message_age_s=0.0)}
        for n in range(5):
            sqs.send_message(QueueUrl=queue, MessageBody=str(n))
        waiting = await lag_until(source, name, lambda lag: lag.backlog == 5)
        assert waiting.oldest_message_age_s is None  # none received yet: the age is not known
        lane = await run.lane()
        records = await read_n(lane, 5)
        held = await source.lag()
        assert held[name].backlog == 0 and held[name].oldest_message_age_s is not None
        assert held[name].oldest_message_age_s >= 0
        await lane.settle(Outcome(succeeded=tuple(records)))
        await lag_until(source, name, lambda lag: lag == Lag(backlog=0, oldest_message_age_s=0.0))
    assert await source.lag() == {}


async def test_redis_tells_its_groups_lag_and_the_age_of_its_oldest_entry(redis_url: str) -> None:
    stream = unique("lagging")
    source = redis_source(redis_url, stream)
    client = aredis.Redis.from_url(redis_url)
    try:
        async with running(source) as run:
            assert await source.lag() == {stream: Lag(backlog=0, oldest_message_age_s=0.0)}
            ids = [await client.xadd(stream, {"n": str(n)}) for n in range(5)]
            first_ms = int(ids[0].decode().split("-")[0])
            waiting = (await source.lag())[stream]
            assert waiting.backlog == 5
            assert waiting.oldest_message_age_s is not None  # from the time in the first entry's id
            assert 0 <= waiting.oldest_message_age_s <= (time.time() * 1000 - first_ms) / 1000 + 0.001
            lane = await run.lane(stream)
            records = await read_n(lane, 5)
            pending = (await source.lag())[stream]
            assert pending.backlog == 0 and pending.oldest_message_age_s is not None  # read, not acknowledged
            await lane.settle(Outcome(succeeded=tuple(records)))
            assert (await source.lag())[stream] == Lag(backlog=0, oldest_message_age_s=0.0)
    finally:
        await client.delete(stream)
        await client.aclose()


async def test_rabbitmq_tells_its_ready_messages(broker: Broker) -> None:
    queue = await broker.queue()
    for n in range(6):
        await broker.publish(queue, b"%d" % n)
    source = rabbitmq_source(queue, prefetch=2)  # two delivered at a time: four wait in the queue
    key = f"{queue}::/"
    async with running(source) as run:
        await lag_until(source, key, lambda lag: lag.backlog == 4)
        lane = await run.lane()
        for _ in range(3):
            records = await read_n(lane, 2)
            await lane.settle(Outcome(succeeded=tuple(records)))
        await lag_until(source, key, lambda lag: lag.backlog == 0)


async def test_kinesis_tells_its_iterator_age(moto: str) -> None:
    from hub.checkpoints import MemoryStore

    stream = create_stream(moto)
    put_records(moto, stream, [("k", b"%d" % n) for n in range(4)])
    source = kinesis_source(moto, stream, MemoryStore())
    async with running(source) as run:
        lane = await run.lane()
        records = await read_n(lane, 4)
        behind = (await source.lag())[lane.key]
        assert behind.iterator_age_ms is not None
        assert behind.iterator_age_ms >= (time.time() - records[-1].timestamp) * 1000 - 1000
        await lane.settle(Outcome(succeeded=tuple(records)))
        assert await lane.read(10, 0.3) == []  # caught up
        assert (await source.lag())[lane.key] == Lag(iterator_age_ms=0.0)
