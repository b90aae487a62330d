"""The source of the shard readers (`StreamSource`): it lists the shards, takes a lease per shard and starts
children after their parents; each shard is a `ShardLane` (connectors/shards/lane.py). The settle table and the
checkpoint values are described in the package docstring."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from connectors.shards.config import ShardReaderConfig
from connectors.shards.lane import LATEST_MARK, SHARD_END, ShardLane
from connectors.shards.service import ShardInfo, ShardService, Start
from hub.leases import Leases
from hub.logs import fields
from hub.records import Lag, Record
from hub.source import SourceContext

PARENT_RECHECK = 1.0
"""Seconds between looks at the store while a shard this hub holds waits for a parent another hub reads."""


def iso(ts: float, *, millis: bool = True) -> str:
    """Epoch seconds as an ISO-8601 UTC time, with milliseconds or whole seconds (on-failure records)."""
    return (
        datetime.fromtimestamp(ts, UTC)
        .isoformat(timespec="milliseconds" if millis else "seconds")
        .replace("+00:00", "Z")
    )


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

    async def lag(self) -> dict[str, Lag]:
        """IteratorAge of each shard read now (service.IteratorAge): no request of its own."""
        now = time.time()
        lags = {key: lane.age.lag(now) for key, lane in self._lanes.items()} if not self.closed else {}
        return {key: lag for key, lag in lags.items() if lag is not None}

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
