"""`kafka`: a topic read by a consumer group, as Lambda's self-managed Apache Kafka (or Amazon MSK) event source
reads it; with `cluster_arn` set, events and failure records take MSK's form (connectors/kafka/events.py).

| settle   | meaning for Kafka                                                                                 |
| -------- | ------------------------------------------------------------------------------------------------- |
| success  | the group's offset of the partition moves to 1 + the highest offset before which all have settled |
| failure  | nothing is committed: the partition does not move past the record; a restart reads it again       |
| ordering | per partition (one lane each, one batch in flight); partitions run independently                  |

One poller task reads with `getmany` (the native batch read) into a buffer per partition; a partition whose
buffer is full is paused until its lane catches up. Lanes come and go with the group's assignment: a lane is
created when its partition is assigned and ends when the partition is revoked. On revocation batches in flight on
the partition get `rebalance_grace` to settle, then what settled is committed and nothing else: the next owner
starts from there. An existing group's committed offsets win over `starting_position`, as on AWS; a partition
without one starts at `starting_position`, and that position is committed at once so that a restart before the
first record settles still starts there.

Brokers that cannot be reached make `open` raise (the mapping retries with backoff); brokers that refuse the SASL
login make it raise KafkaAuthenticationError, which names the user and the mechanism; TLS that fails for a reason
of configuration (a CA that does not sign the brokers' certificates, a client certificate missing or refused, TLS
on one side only) makes it raise KafkaTlsError, which names the setting to look at. Once the group is joined,
aiokafka reconnects by itself, and a commit that does not go through within COMMIT_TIMEOUT raises from `settle`.
Since aiokafka retries inside and never tells, the source asks the brokers for metadata every PROBE_EVERY seconds
and reports to the mapping's health: brokers that are down, or hang without closing their connections, make the
mapping `degraded` within seconds (PROBE_BOUND), and their first answer makes it `running` again.
Anything that breaks the consumer ends `lanes()` with that error, so the mapping closes and reopens the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from connectors.kafka.config import KafkaConfig, client_options, group_id_for
from connectors.kafka.diagnosis import raise_for_configuration
from connectors.kafka.events import filter_view, kafka_batch_info, kafka_event, trace_headers
from connectors.kafka.fetch import Buffer, Chunk, hub_records, install
from connectors.kafka.lag import offset_lags
from connectors.kafka.lane import PartitionLane
from hub.records import Lag, Record
from hub.source import SourceContext

COMMIT_TIMEOUT = 30.0
POLL_TIMEOUT_MS = 1000
DRAIN_ALL = 1 << 30
PROBE_EVERY = 2.0
"""Seconds between two metadata requests that check the brokers answer."""
PROBE_BOUND = 4.0
"""Seconds a metadata request may take before the brokers count as not answering (aiokafka's own timeout is 40)."""
_position = operator.attrgetter("position")


class KafkaSource:
    """A consumer-group member on one topic (or several): one ordered lane per assigned partition."""

    def __init__(self, config: KafkaConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.group_id = config.consumer_group_id or group_id_for(context.mapping)
        self.bootstrap_servers = ",".join(config.servers)
        self.log = context.log
        self.committed: dict[str, int] = {}
        """The last offset committed per lane key (what the group will resume from)."""
        self._consumer: Any = None
        self._poller: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._lanes: dict[Any, PartitionLane] = {}
        self._buffers: dict[Any, Buffer] = {}
        self._paused: set[Any] = set()
        self._new_lanes: deque[PartitionLane] = deque()
        self._pending: dict[Any, int] = {}
        self._commit_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._settled = asyncio.Event()
        self._failure: BaseException | None = None
        self._closed = True
        self._chunked = False
        """getmany returns Chunks (fetch.install() took), not ConsumerRecords."""

    def _fields(self, **extra: Any) -> dict[str, Any]:
        return {"fields": {"mapping": self.context.mapping, "group": self.group_id, **extra}}

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Join the group; raises if no bootstrap server can be reached, KafkaAuthenticationError if they refuse
        the SASL login (naming the user and the mechanism, never the password), KafkaTlsError if TLS fails for a
        reason of configuration. The mapping retries each."""
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
        from aiokafka.errors import KafkaConnectionError

        source = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await source._on_revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await source._on_assigned(assigned)

        self._closed = False
        self._failure = None
        config = self.config
        session_ms = int(config.session_timeout * 1000)
        options = client_options(config)
        self._chunked = install()  # the fetcher hands over record batches unparsed (connectors/kafka/fetch.py)
        self._consumer = AIOKafkaConsumer(
            **options,
            key_deserializer=hub_records if self._chunked else None,  # what asks aiokafka's fetcher for Chunks
            group_id=self.group_id,
            client_id=config.client_id,
            enable_auto_commit=False,
            auto_offset_reset="latest" if config.starting_position == "LATEST" else "earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, min(3000, session_ms // 3)),
            fetch_max_wait_ms=max(1, int(config.fetch_max_wait * 1000)),
            max_partition_fetch_bytes=config.max_partition_fetch_bytes,
            rebalance_timeout_ms=max(60_000, int(config.rebalance_grace * 1000) + 30_000),
        )
        self._consumer.subscribe(topics=config.topics, listener=Listener())
        try:
            await self._consumer.start()
        except KafkaConnectionError:
            await raise_for_configuration(config, options)  # aiokafka's error does not say why
            raise
        self._poller = asyncio.create_task(self._poll(), name=f"kafka-poll:{self.context.mapping}")
        self._poller.add_done_callback(self._poller_done)
        self._prober = asyncio.create_task(self._probe(), name=f"kafka-probe:{self.context.mapping}")
        self.log.info(
            "joined consumer group %s for %s",
            self.group_id,
            ",".join(config.topics),
            extra=self._fields(bootstrap_servers=self.bootstrap_servers),
        )

    async def lanes(self) -> AsyncIterator[PartitionLane]:
        """Yields a lane per partition as the group assigns it; raises what broke the consumer; ends on close."""
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed:
                return
            if self._new_lanes:
                lane = self._new_lanes.popleft()
                if not lane.ending and not lane.ended:
                    yield lane
                continue
            self._changed.clear()
            await self._changed.wait()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The Kafka event (self-managed or MSK, as `cluster_arn` says) of one partition's records."""
        return kafka_event(self.bootstrap_servers, records, self.config.cluster_arn)

    def filter_view(self, record: Record) -> dict[str, Any]:
        """What filters see of a record: its metadata, with its value decoded under `value`."""
        return filter_view(record)

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        """AWS's `KafkaBatchInfo` for a given-up batch (the SQS/SNS on-failure record, without the records)."""
        return kafka_batch_info(self.bootstrap_servers, records, self.config.cluster_arn)

    def trace_context(self, record: Record) -> dict[str, str] | None:
        """The `traceparent` (and `tracestate`) headers of the record, if it has them (hub.tracing)."""
        return trace_headers(record)

    async def lag(self) -> dict[str, Lag]:
        """OffsetLag of each assigned partition (connectors/kafka/lag.py)."""
        if self._consumer is None or self._closed:
            return {}
        lanes = {lane.key: lane.tp for lane in self._lanes.values() if not lane.ending}
        return await offset_lags(self._consumer, lanes, self.committed, self._paused)

    async def close(self) -> None:
        """Leave the group. Lanes end; settles after this commit nothing. Safe twice and after a failed open."""
        if self._pending and self._consumer is not None and self._failure is None:
            try:  # offsets whose commit failed earlier: one last try
                async with self._commit_lock:
                    await self._flush()
            except Exception as exc:
                self.log.warning("committing before closing failed: %s", exc, extra=self._fields())
        self._closed = True
        for lane in [*self._lanes.values(), *self._new_lanes]:
            lane.ended = True
            lane.wake()
        self._lanes.clear()
        self._new_lanes.clear()
        self._buffers.clear()
        self._paused.clear()
        self._pending.clear()
        self._changed.set()
        self._settled.set()
        for task in (self._poller, self._prober):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._poller = self._prober = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # aiokafka's fetcher awaits the fetch tasks it cancels when its broker is away: not our cancellation
                self.log.warning("closing the Kafka consumer was cut short", extra=self._fields())
            except Exception as exc:
                self.log.warning("closing the Kafka consumer failed: %s", exc, extra=self._fields())

    # ---- what lanes call -------------------------------------------------------------------------------------

    def buffer(self, lane: PartitionLane) -> Buffer:
        """The buffer of fetched records of a lane's partition (made on first use)."""
        buffer = self._buffers.get(lane.tp)
        if buffer is None:
            buffer = self._buffers[lane.tp] = Buffer()
        return buffer

    def drained(self, lane: PartitionLane, left: int) -> None:
        """A lane took records: resume its partition once half its buffer is free."""
        if lane.tp in self._paused and left <= self.config.max_buffered_records // 2 and self._consumer is not None:
            self._paused.discard(lane.tp)
            self._consumer.resume(lane.tp)

    def settled(self) -> None:
        """Say a lane settled: a rebalance waiting for revoked partitions to settle looks again."""
        self._settled.set()

    async def commit(self, lane: PartitionLane, offset: int) -> None:
        """Commit `offset` for the lane's partition (with whatever other lanes have pending), durably, or raise."""
        if self._pending.get(lane.tp, -1) < offset:
            self._pending[lane.tp] = offset
        async with self._commit_lock:
            await self._flush()

    async def _flush(self) -> None:
        """Commit every pending offset in one request. Call with the commit lock held."""
        if not self._pending or self._consumer is None:
            return
        offsets, self._pending = self._pending, {}
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), COMMIT_TIMEOUT)
        except BaseException:
            for tp, offset in offsets.items():  # retried with the next commit; a revocation drops them
                if self._pending.get(tp, -1) < offset:
                    self._pending[tp] = offset
            raise
        for tp, offset in offsets.items():
            self.committed[f"{tp.topic}-{tp.partition}"] = offset

    # ---- the poller and the group ------------------------------------------------------------------------------

    async def _poll(self) -> None:
        """Move fetched records into the partitions' buffers; pause a partition whose buffer is full."""
        consumer = self._consumer
        limit = self.config.max_buffered_records
        while True:
            # Take everything fetched: a partition with records left in aiokafka holds back the next fetch for
            # every partition of its broker (aiokafka's prefetch rule), so draining keeps all of them flowing.
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=DRAIN_ALL)
            for tp, messages in batches.items():
                if not self._chunked:  # ConsumerRecords: aiokafka's own path
                    messages = [Chunk.of(messages)]
                buffer = self._buffers.get(tp)
                if buffer is None:
                    buffer = self._buffers[tp] = Buffer()
                buffer.extend(messages)
                lane = self._lanes.get(tp)
                if lane is not None:
                    lane.wake()
                if len(buffer) >= limit and tp not in self._paused:
                    self._paused.add(tp)
                    consumer.pause(tp)

    async def _probe(self) -> None:
        """Ask the brokers for metadata every PROBE_EVERY seconds, under a watch of PROBE_BOUND seconds; report a
        failure or a silence to the mapping's health, and an answer as the end of it."""
        health, consumer = self.context.health, self._consumer
        what = f"kafka brokers {self.bootstrap_servers}"
        while True:
            try:
                await health.watch(what, PROBE_BOUND, consumer.topics())
            except Exception as exc:
                health.fail(what, f"{what}: not answering: {type(exc).__name__}: {exc}")
            await asyncio.sleep(PROBE_EVERY)

    def _poller_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())  # type: ignore[arg-type]

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None and not self._closed:
            self._failure = exc
        self._changed.set()

    async def _on_assigned(self, assigned: Any) -> None:
        """New lanes; partitions the group has no offset for start at starting_position, committed at once."""
        if self._closed:
            return
        try:
            await self._start_fresh_partitions(assigned)
        except Exception as exc:
            self.log.error("could not set up assigned partitions: %s", exc, extra=self._fields())
            self._fail(exc)
            return
        for tp in sorted(assigned):
            lane = PartitionLane(self, tp)
            self._lanes[tp] = lane
            self._new_lanes.append(lane)
        self._changed.set()
        if assigned:
            self.log.info(
                "partitions assigned: %s",
                ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(assigned)),
                extra=self._fields(),
            )

    async def _start_fresh_partitions(self, assigned: Any) -> None:
        consumer = self._consumer
        fresh = [tp for tp in assigned if await consumer.committed(tp) is None]
        if not fresh:
            return
        position = self.config.starting_position
        if position == "TRIM_HORIZON":
            starts = await consumer.beginning_offsets(fresh)
        else:
            starts = await consumer.end_offsets(fresh)
            if position == "AT_TIMESTAMP":
                assert self.config.starting_position_timestamp is not None
                when = int(self.config.starting_position_timestamp.timestamp() * 1000)
                found = await consumer.offsets_for_times(dict.fromkeys(fresh, when))
                starts.update({tp: hit.offset for tp, hit in found.items() if hit is not None})
        for tp in fresh:
            consumer.seek(tp, starts[tp])
            self._buffers.pop(tp, None)  # records fetched from the reset position before the seek
        await asyncio.wait_for(consumer.commit({tp: starts[tp] for tp in fresh}), COMMIT_TIMEOUT)
        for tp in fresh:
            self.committed[f"{tp.topic}-{tp.partition}"] = starts[tp]
        self.log.info(
            "partitions without committed offsets start at %s: %s",
            position,
            ", ".join(f"{tp.topic}-{tp.partition}@{starts[tp]}" for tp in sorted(fresh)),
            extra=self._fields(),
        )

    async def _on_revoked(self, revoked: Any) -> None:
        """End the revoked lanes; give their in-flight batches the grace; commit what settled, nothing else."""
        lanes = [lane for tp in revoked if (lane := self._lanes.pop(tp, None)) is not None]
        for lane in lanes:
            lane.ending = True
            lane.wake()
        deadline = time.monotonic() + self.config.rebalance_grace
        while not self._closed and any(len(lane.tracker) for lane in lanes):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), remaining)
        unsettled = sum(len(lane.tracker) for lane in lanes)
        for lane in lanes:
            lane.ended = True
            lane.wake()
        async with self._commit_lock:
            try:
                await self._flush()
            except Exception as exc:
                self.log.warning("committing before the rebalance failed: %s", exc, extra=self._fields())
        for tp in revoked:
            self._pending.pop(tp, None)
            self._buffers.pop(tp, None)
            self._paused.discard(tp)
        if lanes:
            self.log.info(
                "partitions revoked: %s%s",
                ", ".join(lane.key for lane in lanes),
                f" ({unsettled} records in flight will be delivered again)" if unsettled else "",
                extra=self._fields(),
            )
