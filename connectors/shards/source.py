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
from hub.leases import Lease, Leases
from hub.logs import fields
from hub.records import ContiguousTracker, Outcome, Record
from hub.source import LaneEnded, SourceContext

SHARD_END = "SHARD_END"
LATEST_MARK = "LATEST@"
PARENT_RECHECK = 1.0
"""Seconds between looks at the store while a shard this hub holds waits for a parent another hub reads."""


def iso(ts: float, *, millis: bool = True) -> str:
    """Epoch seconds as an ISO-8601 UTC time, with milliseconds or whole seconds (on-failure records)."""
    return (
        datetime.fromtimestamp(ts, UTC)
        .isoformat(timespec="milliseconds" if millis else "seconds")
        .replace("+00:00", "Z")
    )


class ShardLane:
    """One shard. Reads follow the iterator; settles checkpoint what is contiguous and settled."""

    ordered = True

    def __init__(self, source: StreamSource, shard_id: str, start: Start, lease: Lease) -> None:
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
        self.leases: Leases = context.leases
        self._handing_over: set[asyncio.Task[None]] = set()

    @property
    def closed(self) -> bool:
        """True once the source is closing."""
        return self.closing.is_set()

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, load the checkpoints of every shard, and declare the shards to read (children after their
        parents) as leases of the mapping."""
        self.closing.clear()
        self._lanes.clear()
        self._finished.clear()
        self._marked.clear()
        self._stack = AsyncExitStack()
        identity = await self.service.connect(self._stack)
        self.scope = self.context.scope(self.service.kind, identity)
        self._state = await self.store.get_all(self.scope)
        self._waiting = False
        self._ready = await self._discover()
        self.log.info(
            "reading %s",
            self.service.arn,
            extra=fields(mapping=self.context.mapping, shards=len(self._listed), checkpoints=len(self._state)),
        )

    async def lanes(self) -> AsyncIterator[ShardLane]:
        """A lane for each shard this process holds the lease of, as leases are granted and as parents finish; the
        listing is refreshed now and then. Ends when the source closes."""
        ready, self._ready = self._ready, []
        failures = 0
        changed = self.leases.changed(self.context.mapping)
        while not self.closed:
            for lane in ready:
                self.log.info("reading shard", extra=lane._f())
                yield lane
            # a held shard whose parent another hub reads is looked at again each second
            interval = PARENT_RECHECK if self._waiting else self.settings.shard_discovery_interval
            await self.wait(self._wake, time.monotonic() + interval, changed)
            if self.closed:
                return
            self._wake.clear()
            changed.clear()
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
        """The stream's event: `{"Records": [...]}`."""
        return {"Records": [r.payload for r in records]}

    def event_source_arn(self, lane: str) -> str:
        """The stream's ARN: every shard's records carry it as `eventSourceARN`."""
        return self.service.arn

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
        """Stop every lane and close the clients. Safe to call twice."""
        self.closing.set()
        self._wake.set()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # ---- shards ----------------------------------------------------------------------------------------------

    async def wait(self, event: asyncio.Event, deadline: float | None, also: asyncio.Event | None = None) -> bool:
        """Wait for `event` until `deadline` (monotonic; None: no limit), until the source closes, or until `also`
        is set."""
        if event.is_set():
            return True
        if also is not None and also.is_set():
            return False
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.closing.wait())}
        if also is not None:
            waiters.add(asyncio.ensure_future(also.wait()))
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return event.is_set()

    async def shard_finished(self, lane: ShardLane) -> None:
        """A shard was read to its end and everything settled: mark it finished in the store, forget its lease, and
        let its children start."""
        self._finished.add(lane.key)
        self._state[lane.key] = SHARD_END
        self._lanes.pop(lane.key, None)
        await self.leases.finish(lane.lease)
        self._wake.set()

    def lease_ended(self, lane: ShardLane) -> None:
        """The lane's lease was lost (stop now) or revoked (give it back once what was read has settled)."""
        if self._lanes.get(lane.key) is not lane:
            return
        del self._lanes[lane.key]
        task = asyncio.ensure_future(self._hand_over(lane))
        self._handing_over.add(task)
        task.add_done_callback(self._handing_over.discard)

    async def _hand_over(self, lane: ShardLane) -> None:
        if lane.lease.revoked:
            await self.wait(lane.idle, None, None)
        self.log.info("shard handed over" if lane.lease.revoked else "shard lease lost", extra=lane._f())
        await self.leases.give_back(lane.lease)
        self._wake.set()

    async def _discover(self) -> list[ShardLane]:
        """List the shards; return lanes for those that may start now (not finished, parents all finished)."""
        listed = await self.service.shards()
        self._listed = {s.shard_id: s for s in listed}
        if self.store.shared:  # other hubs read other shards: their checkpoints tell which parents finished
            self._state = await self.store.get_all(self.scope)
        if self.starting_position == "LATEST" and not self._state and listed:
            # A new LATEST mapping: open shards start now; closed ones are history. The first hub to write wins.
            now = self.context.clock.time()
            marks = {s.shard_id: SHARD_END if s.closed else f"{LATEST_MARK}{now!r}" for s in listed}
            self._state = await self.store.put_absent(self.scope, marks)
            self._marked.update(k for k, v in marks.items() if v != SHARD_END and self._state.get(k) == v)
        self._finished.update(k for k, v in self._state.items() if v == SHARD_END)
        group = self.context.mapping
        self.leases.want(group, [self._lease_name(s.shard_id) for s in listed if s.shard_id not in self._finished])
        held = self.leases.held(group)
        ready = []
        self._waiting = False
        for shard in sorted(listed, key=lambda s: s.shard_id):
            if shard.shard_id in self._lanes or shard.shard_id in self._finished:
                continue
            lease = held.get(self._lease_name(shard.shard_id))
            if lease is None or lease.ended.is_set():
                continue  # another hub reads it
            if any((p in self._listed or p in self._lanes) and p not in self._finished for p in shard.parents):
                self._waiting = True
                continue  # a parent is still being read (a parent gone from the list has expired: done)
            if self._state.get(shard.shard_id) == SHARD_END:
                await self.leases.finish(lease)
                continue
            lane = ShardLane(self, shard.shard_id, self._start_for(shard.shard_id), lease)
            self._lanes[shard.shard_id] = lane
            ready.append(lane)
        return ready

    def _lease_name(self, shard_id: str) -> str:
        return f"{self.scope}/{shard_id}"

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
