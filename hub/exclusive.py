"""Sources whose whole work is one unit (a schedule, a watched folder, a polled bucket), run under a lease.

With a shared store, every hub builds the mapping, but only the hub that holds the mapping's lease runs its source:
`LeasedSource` waits for the lease, opens the real source, passes its one lane on, and closes it again when the
lease ends. A revoked lease (the cluster moved it to another hub) is given back only once every record read under
it has settled, so the next owner starts from a checkpoint that nothing in flight will move again. A lost lease
(expired, taken over) stops the lane at once: the next owner reads again what was not checkpointed.

Everything the source writes to the store goes through `FencedStore`, which adds the lease's fence, so a hub woken
from a pause past its lease moves no checkpoint; and its lane hands on no record once the lease's local bound has
passed, so it fires no schedule either.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

from hub.backoff import await_unless
from hub.leases import Lease, Leases
from hub.records import GiveUp, Lag, Outcome, Record
from hub.source import (
    ArnSource,
    BatchInfoSource,
    DeadLetterSource,
    Document,
    FilterViewSource,
    LagSource,
    Lane,
    LaneEnded,
    Source,
    TraceSource,
)
from hub.store import CheckpointStore, Fence


class FencedStore(CheckpointStore):
    """The checkpoint store as a leased source sees it: its writes carry the current lease's fence."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.fence: Fence | None = None

    async def get(self, scope: str, key: str) -> str | None:
        """The wrapped store's value."""
        return await self.store.get(scope, key)

    async def get_all(self, scope: str) -> dict[str, str]:
        """The wrapped store's values."""
        return await self.store.get_all(scope)

    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
        """Write through the wrapped store with the current lease's fence (or the one given)."""
        await self.store.put_many(scope, items, fence or self.fence)


class LeasedLane:
    """The source's lane while the lease is held: reads end when the lease ends; settles are counted, so that a
    revoked lease is given back only once nothing read under it is still in flight."""

    def __init__(self, lane: Lane, lease: Lease) -> None:
        self.lane = lane
        self.lease = lease
        self.key = lane.key
        self.ordered = lane.ordered
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """The lane's records while the lease holds; LaneEnded once it ended, or once its local bound passed (records
        read past it are not handed on: the next owner reads them)."""
        lease = self.lease
        if lease.ended.is_set() or not lease.valid():
            raise LaneEnded(self.key)
        reading = asyncio.ensure_future(self.lane.read(limit, timeout))
        ending = asyncio.ensure_future(lease.ended.wait())
        try:
            await asyncio.wait((reading, ending), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ending.cancel()
            if not reading.done():
                reading.cancel()  # cancelling a read loses nothing (the Lane contract)
                with contextlib.suppress(BaseException):
                    await reading
        if not reading.done() or reading.cancelled():
            raise LaneEnded(self.key)
        records = reading.result()
        if not lease.valid():  # woken past the lease: these were never handed on, the next owner reads them
            raise LaneEnded(self.key)
        if records:
            self.in_flight += len(records)
            self.idle.clear()
        return records

    async def settle(self, outcome: Outcome) -> None:
        """Settle on the wrapped lane, and count the records as no longer in flight."""
        try:
            await self.lane.settle(outcome)
        finally:
            self.in_flight -= len(outcome)
            if self.in_flight <= 0:
                self.in_flight = 0
                self.idle.set()


class LeasedSource(Source, BatchInfoSource, FilterViewSource, ArnSource, DeadLetterSource, LagSource, TraceSource):
    """`source` (one lane) run only while this hub holds the lease `name` of `group`; `store` is the FencedStore
    the source was built with.

    It has every optional capability of the Source contract: each is the wrapped source's when it has it, else
    what the hub does for a source without it (no batch info, the payload as filter view, no ARN, no dead-letter
    queue of its own, no lag, no trace context), so that the mapping treats it exactly as the source it wraps.
    """

    def __init__(self, source: Source, store: FencedStore, leases: Leases, group: str, name: str) -> None:
        self.source = source
        self.store = store
        self.leases = leases
        self.group = group
        self.name = name
        self.lane: LeasedLane | None = None
        self._closing = asyncio.Event()
        # the wrapped source's capabilities, looked up once: filter_view runs for every record
        self._batch_info = source.batch_info if isinstance(source, BatchInfoSource) else None
        self._filter_view = source.filter_view if isinstance(source, FilterViewSource) else None
        self._arn = source.event_source_arn if isinstance(source, ArnSource) else None
        self._trace = source.trace_context if isinstance(source, TraceSource) else None

    async def open(self) -> None:
        """Declare the lease; the source itself opens only once it is held (see lanes)."""
        self._closing.clear()
        self.leases.want(self.group, [self.name])

    async def lanes(self) -> AsyncIterator[Lane]:
        """For each time this hub holds the lease: open the source, yield its one lane, and when the lease ends (after
        what is in flight settled, for a revoked one) close the source and give the lease back. Ends when the source is
        closed."""
        while not self._closing.is_set():
            lease = await await_unless(self._closing, self.leases.wait_for(self.group, self.name))
            if lease is None:
                return
            self.store.fence = lease.fence
            try:
                await self.source.open()
                inner: AsyncGenerator[Lane, None] = self.source.lanes()  # type: ignore[assignment]
                lane = LeasedLane(await anext(inner), lease)
            except BaseException:
                await self._end(lease)
                raise
            self.lane = lane
            try:
                yield lane
                await await_unless(self._closing, lease.ended.wait())
                if lease.revoked:  # hand over only what has settled: wait for what is in flight
                    await await_unless(self._closing, lane.idle.wait())
            finally:
                self.lane = None
                await inner.aclose()
                await self._end(lease)

    async def _end(self, lease: Lease) -> None:
        try:
            await self.source.close()
        finally:
            self.store.fence = None
            await self.leases.give_back(lease)

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The wrapped source's event."""
        return self.source.render(records, attempt)

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        """The wrapped source's batch info; {} when it has none."""
        return self._batch_info(records) if self._batch_info is not None else {}

    def filter_view(self, record: Record) -> Any:
        """The wrapped source's filter view; the record's own view (its payload) when it has none."""
        return self._filter_view(record) if self._filter_view is not None else record.view()

    def event_source_arn(self, lane: str) -> str:
        """The wrapped source's ARN; "" when it names none."""
        return self._arn(lane) if self._arn is not None else ""

    async def lag(self) -> Mapping[str, Lag]:
        """The wrapped source's lag while this hub holds the lease; {} otherwise, or when it tells none."""
        if self.lane is None or not isinstance(self.source, LagSource):
            return {}
        return await self.source.lag()

    def trace_context(self, record: Record) -> Mapping[str, str] | None:
        """The wrapped source's trace context of the record; None when it tells none."""
        return self._trace(record) if self._trace is not None else None

    @property
    def dead_letter_config(self) -> Any:
        """The wrapped source's dead-letter queue; None when it has none."""
        return self.source.dead_letter_config if isinstance(self.source, DeadLetterSource) else None

    def dead_letter(self, records: Sequence[Record], give_up: GiveUp) -> Document:
        """The wrapped source's dead letter (asked only when it has a dead-letter queue)."""
        if not isinstance(self.source, DeadLetterSource):
            raise TypeError("the leased source has no dead-letter queue of its own")
        return self.source.dead_letter(records, give_up)

    async def close(self) -> None:
        """Stop waiting for the lease and close the wrapped source."""
        self._closing.set()
        await self.source.close()
