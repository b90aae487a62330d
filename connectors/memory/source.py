"""The `memory` source: the lanes of a channel of this process (see the package docstring)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from connectors.memory import events
from connectors.memory.channels import BROKER, QueueChannel, StreamChannel, wait
from connectors.memory.config import MemoryConfig
from hub.records import ContiguousTracker, Outcome, Record
from hub.source import LaneEnded, SourceContext


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


class MemorySource:
    """A channel's lanes: a stream's ordered lanes, or a queue's one unordered lane."""

    def __init__(self, config: MemoryConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.scope = context.scope("memory", config.name)
        self.closed = asyncio.Event()
        self.closed.set()
        self._lanes: list[StreamLane] | list[QueueLane] = []
        self._queue: QueueChannel | None = None

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Make (or find) the channel, put the configured records in a channel it made, and make its lanes: one per
        log of a stream, starting after the checkpoint; one for a queue."""
        config = self.config
        channel, made = BROKER.create(config.name, config.mode, config.lanes)
        channel.check()
        if made and config.records:
            channel.put(config.records)
        if isinstance(channel, StreamChannel):
            state = await self.context.store.get_all(self.scope)
            lanes = []
            for index in range(channel.lanes):
                key = f"{config.name}-{index}"
                if key in state:
                    start = int(state[key])
                elif config.starting_position == "LATEST":
                    start = channel.end(index)
                    await self.context.store.put(self.scope, key, str(start))  # a restart does not skip what came
                else:
                    start = 0
                lanes.append(StreamLane(self, channel, index, key, start))
            self._lanes = lanes
        else:
            assert isinstance(channel, QueueChannel)
            self._queue = channel
            self._lanes = [QueueLane(self, channel)]
        self.closed.clear()
        self.context.log.info(
            "reading memory %s %s",
            config.mode,
            config.name,
            extra={"fields": {"mapping": self.context.mapping, "lanes": len(self._lanes)}},
        )

    async def lanes(self) -> AsyncIterator[StreamLane | QueueLane]:
        """The channel's lanes, until the source closes."""
        for lane in self._lanes:
            yield lane
        await self.closed.wait()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The event: `{"Records": [...]}`."""
        return {"Records": [r.payload for r in records]}

    def filter_view(self, record: Record) -> dict[str, Any]:
        """What filters see of a record: its metadata, with its data under `data`."""
        return events.filter_view(record)

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        """The batch info of a given-up stream batch (first and last sequence number per lane)."""
        return events.batch_info(self.config.name, records)

    async def close(self) -> None:
        """Stop the lanes (a waiting read ends) and give a queue's unsettled messages back to it."""
        self.closed.set()
        lanes, self._lanes = self._lanes, []
        queue, self._queue = self._queue, None
        for lane in lanes:
            lane.channel.wake()  # a read waiting for records ends
            if queue is not None:
                queue.let_go(lane)


class StreamLane:
    """One log of a stream channel. Reads follow a cursor; settles checkpoint the next offset after the contiguous
    settled ones, and a failure moves the cursor back to the failed record."""

    ordered = True

    def __init__(self, source: MemorySource, channel: StreamChannel, index: int, key: str, start: int) -> None:
        self.source = source
        self.channel = channel
        self.index = index
        self.key = key
        self._next = start
        self._tracker = ContiguousTracker()
        self._written = start
        self._write_lock = asyncio.Lock()

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` entries of the log after the last read one; [] when `timeout` passed; LaneEnded once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.source.closed.is_set():
                raise LaneEnded(self.key)
            entries, changed = self.channel.read(self.index, self._next, limit)
            if entries:
                break
            assert changed is not None
            left = _left(deadline)
            if left is not None and left <= 0:
                changed.cancel()
                return []
            await wait(changed, left)
        first, self._next = self._next, self._next + len(entries)
        self._tracker.track(range(first, self._next))
        config, context = self.source.config, self.source.context
        received = time.monotonic()
        return [
            Record(
                self.key,
                offset,
                events.payload(
                    f"{self.key}:{offset}",
                    config.name,
                    self.key,
                    e.data,
                    e.sent,
                    context.region,
                    e.key,
                    sequence=offset,
                ),
                timestamp=e.sent,
                size=e.size,
                item_id=f"{self.key}:{offset}",
                order_key=e.key,
                received=received,
            )
            for offset, e in enumerate(entries, first)
        ]

    async def settle(self, outcome: Outcome) -> None:
        """Checkpoint what is contiguous and settled; a failed record is read again, and so is everything of the
        outcome when the channel is cut (nothing of it is checkpointed)."""
        if self.channel.is_cut:
            self._rewind([int(r.position) for r in (*outcome.settled, *outcome.failed)])  # type: ignore[call-overload]
            self.channel.check()
        self._tracker.done([r.position for r in outcome.settled])
        if outcome.failed:
            self._rewind([int(r.position) for r in outcome.failed])  # type: ignore[call-overload]
        newest = self._tracker.advance()
        if newest is None:
            return
        async with self._write_lock:
            target = int(newest) + 1  # type: ignore[call-overload]
            if target > self._written:
                await self.source.context.store.put(self.source.scope, self.key, str(target))
                self._written = target

    def _rewind(self, offsets: list[int]) -> None:
        if offsets:
            self._next = min(self._next, *offsets)


class QueueLane:
    """A queue channel's one lane: messages held while in flight, deleted when settled, released when failed."""

    ordered = False

    def __init__(self, source: MemorySource, channel: QueueChannel) -> None:
        self.source = source
        self.channel = channel
        self.key = source.config.name

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` visible messages, each taken (invisible) until it settles; [] when `timeout` passed;
        LaneEnded once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.source.closed.is_set():
                raise LaneEnded(self.key)
            messages, changed, due = self.channel.take(limit, self)
            if messages:
                break
            assert changed is not None
            left = _left(deadline)
            if left is not None and left <= 0:
                changed.cancel()
                return []
            await wait(changed, due if left is None else left if due is None else min(left, due))
        config, region = self.source.config, self.source.context.region
        received = time.monotonic()
        return [
            Record(
                self.key,
                (m.id, m.deliveries),
                events.payload(
                    m.id,
                    config.name,
                    self.key,
                    m.entry.data,
                    m.entry.sent,
                    region,
                    m.entry.key,
                    deliveries=m.deliveries,
                ),
                timestamp=m.entry.sent,
                size=m.entry.size,
                item_id=m.id,
                attempt=m.deliveries,
                received=received,
            )
            for m in messages
        ]

    async def settle(self, outcome: Outcome) -> None:
        """Delete what settled; release what failed (delivered again after `redelivery_delay`). While the channel
        is cut, everything of the outcome goes back to the queue and settle raises."""
        done = [r.position for r in outcome.settled]
        failed = [r.position for r in outcome.failed]
        if self.channel.is_cut:
            self.channel.settle((), [*done, *failed], 0.0)  # type: ignore[list-item]
            self.channel.check()
        self.channel.settle(done, failed, self.source.config.redelivery_delay)  # type: ignore[arg-type]
