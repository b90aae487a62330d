"""One shard as a lane (`ShardLane`): reads follow its iterator, settles checkpoint the highest contiguous settled
sequence number under the shard's lease (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from connectors.shards.config import ShardReaderConfig
from connectors.shards.service import IteratorAge, IteratorExpired, Page, ShardGone, ShardService, Start
from hub.leases import Lease
from hub.logs import fields
from hub.records import ContiguousTracker, Outcome, Record
from hub.source import LaneEnded, SourceContext
from hub.store import CheckpointStore

SHARD_END = "SHARD_END"
"""The checkpoint of a closed shard read to its end and wholly settled."""
LATEST_MARK = "LATEST@"
"""The checkpoint of a LATEST mapping that began at the time that follows, and settled nothing on the shard since."""


class ShardReader(Protocol):
    """What a shard's lane uses of its source (connectors/shards/source.py's StreamSource)."""

    service: ShardService
    settings: ShardReaderConfig
    context: SourceContext
    store: CheckpointStore
    log: logging.Logger
    scope: str
    closing: asyncio.Event

    @property
    def closed(self) -> bool:
        """True once the source is closing."""
        ...

    async def wait(self, event: asyncio.Event, deadline: float | None, also: asyncio.Event | None = None) -> bool:
        """Wait for `event` until `deadline` (monotonic), the source's closing, or `also`; whether `event` is set."""
        ...

    async def shard_finished(self, lane: ShardLane) -> None:
        """The shard was read to its end and wholly settled."""
        ...

    def lease_ended(self, lane: ShardLane) -> None:
        """The shard's lease was lost or revoked."""
        ...


class ShardLane:
    """One shard. Reads follow the iterator; settles checkpoint what is contiguous and settled."""

    ordered = True

    def __init__(self, source: ShardReader, shard_id: str, start: Start, lease: Lease) -> None:
        self.key = shard_id
        self.source = source
        self.lease = lease
        self._start = start
        self._iterator: str | None = None
        self._last_read: str | None = None
        self._tracker = ContiguousTracker()
        self._open: set[int] = set()  # read, not settled yet
        self._idle = asyncio.Event()
        self._idle.set()
        self._at_end = False  # GetRecords answered without NextShardIterator
        self._finished = False
        self._written: int | None = None
        self._pending: int | None = None
        self._write_lock = asyncio.Lock()
        self.age = IteratorAge()

    # ---- reading ---------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` records of the shard, following its iterator (renewed when it expires, from the last record
        read); [] when `timeout` passed; LaneEnded once the shard is finished, the source closed or the lease no
        longer valid."""
        source = self.source
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._finished or source.closed:
                raise LaneEnded(self.key)
            if not self.lease.valid() or self.lease.ended.is_set():
                source.lease_ended(self)
                raise LaneEnded(self.key)
            if self._at_end:
                if await source.wait(self._idle, deadline, self.lease.ended):
                    await self._finish()
                    raise LaneEnded(self.key)
                return []
            page = await self._fetch(max(1, min(limit, source.service.max_limit)))
            if not self.lease.valid():  # woken past the lease: hand nothing on; the next owner reads them
                continue
            records = self._accept(page.records)
            self.age.observe(page, records)
            if records:
                return records
            if page.next_iterator is None:
                self._at_end = True
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            if page.records or page.millis_behind:
                continue  # not caught up: an empty page does not mean the shard is drained
            pause = source.settings.poll_interval if left is None else min(left, source.settings.poll_interval)
            await source.wait(source.closing, time.monotonic() + pause, self.lease.ended)

    async def _fetch(self, limit: int) -> Page:
        service = self.source.service
        try:
            if self._iterator is None:
                self._iterator = await service.iterator(self.key, self._resume())
            try:
                page = await service.get_records(self._iterator, limit)
            except IteratorExpired:
                self.source.log.info(
                    "shard iterator expired; resuming after %s", self._last_read or self._start.kind, extra=self._f()
                )
                self._iterator = await service.iterator(self.key, self._resume())
                page = await service.get_records(self._iterator, limit)
        except ShardGone:
            self.source.log.warning("shard no longer exists; treating it as finished", extra=self._f())
            return Page([], None, 0)
        self._iterator = page.next_iterator
        return page

    def _resume(self) -> Start:
        if self._last_read is not None:
            return Start("AFTER_SEQUENCE_NUMBER", self._last_read)
        return self._start

    def _accept(self, raws: list[Any]) -> list[Record]:
        not_before = self._start.not_before
        out: list[Record] = []
        skipped: list[int] = []
        for raw in raws:
            record = self.source.service.record(self.key, raw)
            self._last_read = str(record.item_id)
            if not_before is not None and record.timestamp < not_before:
                skipped.append(int(record.position))  # type: ignore[call-overload]
                continue
            out.append(record)
        positions = [int(r.position) for r in out]  # type: ignore[call-overload]
        self._tracker.track(sorted(skipped + positions))
        self._tracker.done(skipped)
        if positions:
            self._open.update(positions)
            self._idle.clear()
        return out

    # ---- settling --------------------------------------------------------------------------------------------

    async def settle(self, outcome: Outcome) -> None:
        """Checkpoint the highest contiguous settled sequence number under the lease's fence; after a failure, read
        again from the failed record. A shard read to its end and settled is finished."""
        settled = [int(r.position) for r in outcome.settled]  # type: ignore[call-overload]
        failed = [int(r.position) for r in outcome.failed]  # type: ignore[call-overload]
        self._tracker.done(settled)
        self._open.difference_update(settled)
        self._open.difference_update(failed)
        if failed:
            self._rewind(min(failed))
        await self._checkpoint()
        if not self._open:
            self._idle.set()
            if self._at_end:
                await self._finish()

    def _rewind(self, position: int) -> None:
        """Read again from a failed record: a stream lane never moves past what has not settled."""
        self._start = Start("AT_SEQUENCE_NUMBER", str(position))
        self._iterator = None
        self._last_read = None
        self._at_end = False

    async def _checkpoint(self) -> None:
        newest = self._tracker.advance()
        if newest is not None:
            self._pending = max(int(newest), self._pending or 0)  # type: ignore[call-overload]
        async with self._write_lock:
            target = self._pending
            if target is None or self._finished or (self._written is not None and target <= self._written):
                return
            await self.source.store.put(self.source.scope, self.key, str(target), self.lease.fence)
            self._written = target

    async def _finish(self) -> None:
        async with self._write_lock:
            if self._finished:
                return
            await self.source.store.put(self.source.scope, self.key, SHARD_END, self.lease.fence)
            self._finished = True
        self.source.log.info("shard finished", extra=self._f())
        await self.source.shard_finished(self)

    @property
    def idle(self) -> asyncio.Event:
        """Set while nothing read from this lane is unsettled."""
        return self._idle

    def _f(self) -> dict[str, Any]:
        return fields(mapping=self.source.context.mapping, shard=self.key)
