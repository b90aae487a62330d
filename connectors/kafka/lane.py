"""One assigned partition as a lane (`PartitionLane`): reads take records from the source's buffer of the partition,
settles commit the group's offset past what has contiguously settled (see connectors/kafka/source.py)."""

from __future__ import annotations

import asyncio
import operator
import time
from collections import deque
from typing import Any, Protocol, cast

from connectors.kafka.events import kafka_records
from connectors.kafka.fetch import Buffer
from hub.records import ContiguousTracker, Outcome, Record
from hub.source import LaneEnded

_position = operator.attrgetter("position")


class PartitionReader(Protocol):
    """What a partition's lane uses of its source (connectors/kafka/source.py's KafkaSource)."""

    def buffer(self, lane: PartitionLane) -> Buffer:
        """The buffer of fetched records of the lane's partition."""
        ...

    def drained(self, lane: PartitionLane, left: int) -> None:
        """The lane took records; `left` remain in its buffer (a paused partition resumes once it runs low)."""
        ...

    def settled(self) -> None:
        """The lane settled a batch."""
        ...

    async def commit(self, lane: PartitionLane, offset: int) -> None:
        """Commit the group's offset of the lane's partition."""
        ...


class PartitionLane:
    """One assigned partition. Reads from the source's buffer; settles by committing the group's offset."""

    ordered = True

    def __init__(self, source: PartitionReader, tp: Any) -> None:
        self.source = source
        self.tp = tp
        self.key = f"{tp.topic}-{tp.partition}"
        self.tracker = ContiguousTracker()
        self.ending = False
        """Revoked: no new batch starts; a batch still filling gets its window; in-flight ones may settle."""
        self.ended = False
        """Gone for good: reads raise LaneEnded and settles commit nothing."""
        self._wake = asyncio.Event()
        self._again: deque[Record] = deque()
        """Records that settled as failed (not done, not given up): read again before the buffer."""

    def wake(self) -> None:
        """Wake a read waiting for the buffer (records arrived, or the lane is ending)."""
        self._wake.set()

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` records of the partition from the source's buffer; [] when `timeout` passed; LaneEnded once
        the partition was revoked (after a batch that was filling got its window) or the source closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.ended:
                raise LaneEnded(self.key)
            if self._again and not self.ending:
                again = self._again
                return [again.popleft() for _ in range(min(limit, len(again)))]  # still tracked, in their place
            if self.ending:
                if deadline is None:
                    raise LaneEnded(self.key)
                # A batch is filling: let its window run out so it is dispatched and can settle in the grace.
            elif (buffer := self.source.buffer(self)) and (messages := buffer.take(limit)):
                break  # (a buffer that held only offsets compaction emptied gives none: wait again)
            self._wake.clear()
            if deadline is None:
                await self._wake.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return []
        records = kafka_records(messages, self.key, self.tp.topic, self.tp.partition)
        self.tracker.track(map(_position, records))
        self.source.drained(self, len(buffer))
        return records

    async def settle(self, outcome: Outcome) -> None:
        """Commit 1 + the highest offset before which every record read has settled; failed records hold it and are
        read again first (a partition never moves past what has not settled; once revoked, its next owner reads them
        from the committed offset)."""
        self.tracker.done(map(_position, outcome.settled))
        if outcome.failed and not (self.ending or self.ended):
            self._again.extendleft(reversed(outcome.failed))
            self._wake.set()
        newest = self.tracker.advance()
        self.source.settled()
        if newest is None or self.ended:
            return
        await self.source.commit(self, cast(int, newest) + 1)
