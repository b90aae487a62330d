"""The shard readers: one ordered lane per shard (`ShardLane`), and the source that lists the shards and starts
children after their parents (`StreamSource`). The settle table and the checkpoint values are described in the
package docstring."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from connectors.shards.config import ShardReaderConfig
from connectors.shards.service import IteratorExpired, Page, ShardGone, ShardInfo, ShardService, Start
from hub.logs import fields
from hub.records import ContiguousTracker, Outcome, Record
from hub.source import LaneEnded, SourceContext

SHARD_END = "SHARD_END"
LATEST_MARK = "LATEST@"


def iso(ts: float, *, millis: bool = True) -> str:
    return (
        datetime.fromtimestamp(ts, UTC)
        .isoformat(timespec="milliseconds" if millis else "seconds")
        .replace("+00:00", "Z")
    )


class ShardLane:
    """One shard. Reads follow the iterator; settles checkpoint what is contiguous and settled."""

    ordered = True

    def __init__(self, source: StreamSource, shard_id: str, start: Start) -> None:
        self.key = shard_id
        self.source = source
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

    # ---- reading ---------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        source = self.source
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._finished or source.closed:
                raise LaneEnded(self.key)
            if self._at_end:
                if await source.wait(self._idle, deadline):
                    await self._finish()
                    raise LaneEnded(self.key)
                return []
            page = await self._fetch(max(1, min(limit, source.service.max_limit)))
            records = self._accept(page.records)
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
            await source.wait(source.closing, time.monotonic() + pause)

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
            await self.source.store.put(self.source.scope, self.key, str(target))
            self._written = target

    async def _finish(self) -> None:
        async with self._write_lock:
            if self._finished:
                return
            await self.source.store.put(self.source.scope, self.key, SHARD_END)
            self._finished = True
        self.source.log.info("shard finished", extra=self._f())
        self.source.shard_finished(self.key)

    def _f(self) -> dict[str, Any]:
        return fields(mapping=self.source.context.mapping, shard=self.key)


class StreamSource:
    """A stream read shard by shard: one ordered lane per shard, children after their parents."""

    def __init__(
        self,
        service: ShardService,
        settings: ShardReaderConfig,
        starting_position: str,
        starting_timestamp: float | None,
        context: SourceContext,
    ) -> None:
        self.service = service
        self.settings = settings
        self.starting_position = starting_position
        self.starting_timestamp = starting_timestamp
        self.context = context
        self.store = context.store
        self.log: logging.Logger = context.log
        self.scope = ""
        self.closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._stack: AsyncExitStack | None = None
        self._state: dict[str, str] = {}
        self._listed: dict[str, ShardInfo] = {}
        self._lanes: dict[str, ShardLane] = {}
        self._finished: set[str] = set()
        self._marked: set[str] = set()  # LATEST marks written by this process
        self._ready: list[ShardLane] = []

    @property
    def closed(self) -> bool:
        return self.closing.is_set()

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        self.closing.clear()
        self._lanes.clear()
        self._finished.clear()
        self._marked.clear()
        self._stack = AsyncExitStack()
        identity = await self.service.connect(self._stack)
        self.scope = self.context.scope(self.service.kind, identity)
        self._state = await self.store.get_all(self.scope)
        self._ready = await self._discover()
        self.log.info(
            "reading %s",
            self.service.arn,
            extra=fields(mapping=self.context.mapping, shards=len(self._listed), checkpoints=len(self._state)),
        )

    async def lanes(self) -> AsyncIterator[ShardLane]:
        ready, self._ready = self._ready, []
        failures = 0
        while not self.closed:
            for lane in ready:
                self.log.info("reading shard", extra=lane._f())
                yield lane
            await self.wait(self._wake, time.monotonic() + self.settings.shard_discovery_interval)
            if self.closed:
                return
            self._wake.clear()
            try:
                ready = await self._discover()
            except Exception as exc:  # the lanes keep reading; the next discovery tries again
                ready = []
                failures += 1
                if failures == 1:
                    self.log.warning(
                        "listing shards failed: %s: %s; trying again in %.0fs",
                        type(exc).__name__,
                        exc,
                        self.settings.shard_discovery_interval,
                        extra=fields(mapping=self.context.mapping),
                    )
                continue
            if failures:
                self.log.info("listing shards again", extra=fields(mapping=self.context.mapping))
                failures = 0

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        return {"Records": [r.payload for r in records]}

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        """AWS's description of a given-up batch (`KinesisBatchInfo`, `DDBStreamBatchInfo`)."""
        millis = self.service.arrival_millis
        return {
            self.service.batch_info_key: {
                "shardId": records[0].lane,
                "startSequenceNumber": str(records[0].item_id),
                "endSequenceNumber": str(records[-1].item_id),
                "approximateArrivalOfFirstRecord": iso(records[0].timestamp, millis=millis),
                "approximateArrivalOfLastRecord": iso(records[-1].timestamp, millis=millis),
                "batchSize": len(records),
                "streamArn": self.service.arn,
            }
        }

    async def close(self) -> None:
        self.closing.set()
        self._wake.set()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # ---- shards ----------------------------------------------------------------------------------------------

    async def wait(self, event: asyncio.Event, deadline: float | None) -> bool:
        """Wait for `event` until `deadline` (monotonic; None: no limit) or until the source closes."""
        if event.is_set():
            return True
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.closing.wait())}
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return event.is_set()

    def shard_finished(self, shard_id: str) -> None:
        self._finished.add(shard_id)
        self._state[shard_id] = SHARD_END
        self._wake.set()

    async def _discover(self) -> list[ShardLane]:
        """List the shards; return lanes for those that may start now (not finished, parents all finished)."""
        listed = await self.service.shards()
        self._listed = {s.shard_id: s for s in listed}
        if self.starting_position == "LATEST" and not self._state and listed:
            # A new LATEST mapping: open shards start now; closed ones are history.
            now = self.context.clock.time()
            marks = {s.shard_id: SHARD_END if s.closed else f"{LATEST_MARK}{now!r}" for s in listed}
            await self.store.put_many(self.scope, marks)
            self._state.update(marks)
            self._marked.update(k for k, v in marks.items() if v != SHARD_END)
        self._finished.update(k for k, v in self._state.items() if v == SHARD_END)
        ready = []
        for shard in sorted(listed, key=lambda s: s.shard_id):
            if shard.shard_id in self._lanes or shard.shard_id in self._finished:
                continue
            if any((p in self._listed or p in self._lanes) and p not in self._finished for p in shard.parents):
                continue  # a parent is still being read (a parent gone from the list has expired: done)
            lane = ShardLane(self, shard.shard_id, self._start_for(shard.shard_id))
            self._lanes[shard.shard_id] = lane
            ready.append(lane)
        return ready

    def _start_for(self, shard_id: str) -> Start:
        state = self._state.get(shard_id)
        if state is not None and state.startswith(LATEST_MARK):
            since = float(state.removeprefix(LATEST_MARK))
            return self.service.latest(since) if shard_id in self._marked else self.service.resume_latest(since)
        if state is not None:
            return Start("AFTER_SEQUENCE_NUMBER", state)
        if self.starting_position == "AT_TIMESTAMP":
            # botocore sends whole seconds: skip what arrived in that second before the timestamp
            return Start("AT_TIMESTAMP", timestamp=self.starting_timestamp, not_before=self.starting_timestamp)
        # TRIM_HORIZON, or a shard that appeared after a LATEST mapping began (a child: read it whole)
        return Start("TRIM_HORIZON")
