"""Kafka for replays (hub.readback, hub.replay): a failure topic read back, and a given-up batch read again.

- `inbox`: the `kafka` destination's topic, read from its beginning by offsets with no consumer group (nothing is
  committed, no group appears on the brokers). A letter's id is `partition:offset`. A topic cannot delete a
  record: a replayed one's id is written to the checkpoint store (scope `<mapping>/replayed/kafka:<topic>`) and
  left out of every listing after.
- `reread`: the records a `KafkaBatchInfo` names (`recordsInfo`: first and last offset per `topic-partition`),
  read again from the mapping's topic and rendered as the event the function got. Records the topic no longer
  holds (retention) raise Gone.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from connectors.kafka.config import KafkaConnection, KafkaDestinationConfig, client_options
from connectors.kafka.events import kafka_event, kafka_records
from hub.isotime import iso_ms
from hub.readback import Gone, Letter, parsed
from hub.source import SourceContext

READ_TIMEOUT = 20.0
"""Longest a listing or a re-read waits for the brokers before it gives what it has (or fails)."""


@asynccontextmanager
async def _consumer(config: KafkaConnection) -> AsyncIterator[Any]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        **client_options(config), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> list[Any]:
    from aiokafka import TopicPartition

    await consumer.topics()  # fetches the metadata
    found = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(found)]


def _letter(message: Any) -> Letter:
    body = parsed(message.value.decode(errors="replace")) if message.value is not None else None
    when = body.get("timestamp") if isinstance(body, dict) else None
    return Letter(
        f"{message.partition}:{message.offset}", body, when=when if isinstance(when, str) else iso_ms(message.timestamp)
    )


class KafkaInbox:
    """A `kafka` destination's topic read back by offsets, with no consumer group; replayed letters are hidden
    through the checkpoint store, since a topic cannot delete a record."""

    kind = "kafka"

    def __init__(self, config: KafkaDestinationConfig, store: Any, mapping: str) -> None:
        self.config = config
        self.store = store
        self.scope = f"{mapping}/replayed/kafka:{config.topic}"

    async def list(self, limit: int) -> tuple[list[Letter], int | None]:
        """Up to `limit` records of the topic from its beginning, without those already replayed, and how many
        remain."""
        hidden = await self.store.get_all(self.scope)
        letters: list[Letter] = []
        async with _consumer(self.config) as consumer:
            partitions = await _partitions(consumer, self.config.topic)
            if not partitions:
                return [], 0
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            begins = await consumer.beginning_offsets(partitions)
            estimate = sum(ends[tp] - begins[tp] for tp in partitions)
            estimate -= sum(1 for id_ in hidden if _within(id_, begins, ends))
            await consumer.seek_to_beginning(*partitions)
            left = set(partitions)
            counted = 0
            deadline = time.monotonic() + READ_TIMEOUT
            while left and len(letters) < limit and time.monotonic() < deadline:
                batches = await consumer.getmany(*left, timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        if f"{message.partition}:{message.offset}" in hidden:
                            continue
                        counted += 1
                        if len(letters) < limit:
                            letters.append(_letter(message))
                # the end offsets only tell where to start looking for the end: a partition is read once a poll
                # at or past them brings nothing (a broker may count its last batch short)
                for tp in list(left):
                    if not batches.get(tp) and await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
        total = counted if not left else max(estimate, counted)
        letters.sort(key=_order)
        return letters[:limit], total

    async def take(self, ids: Sequence[str], hold: float) -> dict[str, Letter]:
        """The records of these `partition:offset` ids still in the topic and not replayed yet (`hold` is not used)."""
        from aiokafka import TopicPartition

        hidden = await self.store.get_all(self.scope)
        found: dict[str, Letter] = {}
        async with _consumer(self.config) as consumer:
            known = {tp.partition for tp in await _partitions(consumer, self.config.topic)}
            for id_ in ids:
                partition, _, offset = id_.partition(":")
                if id_ in hidden or not (partition.isdigit() and offset.isdigit()) or int(partition) not in known:
                    continue
                tp = TopicPartition(self.config.topic, int(partition))
                consumer.assign([tp])
                consumer.seek(tp, int(offset))
                message = await _next(consumer, tp)
                if message is not None and message.offset == int(offset):
                    found[id_] = _letter(message)
        return found

    async def remove(self, letter: Letter) -> None:
        """Hide the letter from now on: its id is written to the store as replayed."""
        await self.store.put(self.scope, letter.id, datetime.now(UTC).isoformat(timespec="seconds"))

    async def release(self, letter: Letter) -> None:
        """Nothing to give back: the record stays in the topic."""

    async def close(self) -> None:
        """Nothing to release: each call opens and closes its own consumer."""


def _order(letter: Letter) -> tuple[str, int, int]:
    partition, _, offset = letter.id.partition(":")
    return letter.when or "", int(partition), int(offset)


def _within(id_: str, begins: dict[Any, int], ends: dict[Any, int]) -> bool:
    partition, _, offset = id_.partition(":")
    for tp, end in ends.items():
        if str(tp.partition) == partition and offset.isdigit():
            return begins[tp] <= int(offset) < end
    return False


async def _next(consumer: Any, tp: Any) -> Any:
    """The next record of `tp` from the consumer's position, or None when there is none within READ_TIMEOUT."""
    end = (await consumer.end_offsets([tp]))[tp]
    # past the end offset, one short look: a broker may count its last batch short
    deadline = time.monotonic() + (1.0 if await consumer.position(tp) >= end else READ_TIMEOUT)
    while time.monotonic() < deadline:
        batch = (await consumer.getmany(tp, timeout_ms=500, max_records=1)).get(tp)
        if batch:
            return batch[0]
    return None


def inbox(config: KafkaDestinationConfig, region: str, store: Any, mapping: str) -> KafkaInbox:
    """The inbox of a `kafka` destination (its DestinationSpec's `inbox`)."""
    return KafkaInbox(config, store, mapping)


async def reread(config: Any, context: SourceContext, info: dict[str, Any]) -> dict[str, Any]:
    """The event of the records `info` (a KafkaBatchInfo) names, read again from the mapping's topic."""
    from aiokafka import TopicPartition

    ranges = info.get("recordsInfo")
    if not isinstance(ranges, dict) or not ranges:
        raise Gone("the failure record names no offsets")
    records = []
    async with _consumer(config) as consumer:
        for lane, span in ranges.items():
            topic, _, partition = str(lane).rpartition("-")
            first, last = int(span["firstRecordOffset"]), int(span["lastRecordOffset"])
            tp = TopicPartition(topic, int(partition))
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            if begin > first:
                raise Gone(f"offset {first} of {lane} is no longer in the topic (the oldest left is {begin})")
            consumer.seek(tp, first)
            messages: list[Any] = []
            deadline = time.monotonic() + READ_TIMEOUT
            while (not messages or messages[-1].offset < last) and time.monotonic() < deadline:
                batch = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
                messages.extend(m for m in batch if first <= m.offset <= last)
                if batch and batch[-1].offset >= last:
                    break
            if not messages:
                raise Gone(f"offsets {first}..{last} of {lane} could not be read again")
            records.extend(kafka_records(messages, str(lane), topic, int(partition)))
    return kafka_event(",".join(config.servers), records, config.cluster_arn)
