"""Lane runners: how one lane of a mapping is read, batched, dispatched and settled.

A mapping picks one runner per lane (hub/mapping.py): `run_plain_lane` (one batch in flight for an ordered lane,
`max_concurrency` for an unordered one), `run_parallel_lane` (an ordered lane spread over
`parallelization_factor` sub-lanes by order key) or hub/windows.py's `run_windowed_lane` (tumbling windows). Each
runner uses only what `LaneWork` offers: the batching policy (`Batcher`), batches in flight, settling, and how
read failures are reported.

Back-pressure: a lane reads a new batch only when it has room in flight. Nothing read is ever lost: a batch in
flight when the hub stops settles as failed, and is read again after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from hub.backoff import Backoff, cancelling, sleep_unless
from hub.config import MappingConfig
from hub.dispatch import Dispatcher
from hub.filtering import FilterSet
from hub.health import SETTLE_BOUND, STALL_GRACE, Health
from hub.invocation import Counters, Envelope
from hub.logs import fields
from hub.records import Outcome, Record
from hub.source import FilterViewSource, Lane, LaneEnded, Source

log = logging.getLogger("hub.mapping")
_size = operator.attrgetter("size")

MAX_PAYLOAD = 6 * 1024 * 1024
"""Lambda's synchronous payload cap: a batch is cut before it passes 6 MB."""


class Batcher:
    """The one batching policy: cut at `size` records, `max_bytes`, or `window` seconds after the first record.

    Records that no filter matches are handed to `on_filtered` as they are read and never enter a batch.
    """

    def __init__(
        self,
        lane: Lane,
        size: int,
        window: float,
        filters: FilterSet,
        on_filtered: Callable[[list[Record]], None],
        max_bytes: int = MAX_PAYLOAD,
        boundary: Callable[[Record], object] | None = None,
        counters: Counters | None = None,
        view: Callable[[Record], Any] | None = None,
        health: Health | None = None,
    ) -> None:
        self.lane = lane
        self.size = size
        self.window = window
        self.filters = filters
        self.on_filtered = on_filtered
        self.max_bytes = max_bytes
        self.boundary = boundary
        """Records for which it gives another value never share a batch (a tumbling window's start)."""
        self.counters = counters or Counters()
        self.view = view
        """The source's `filter_view(record)`, for records that carry no `filter_view` of their own."""
        self.health = health
        """Watches reads with a timeout (one that overruns it by STALL_GRACE: the source does not answer)."""
        self._reading = f"reading lane {lane.key}"
        self._carry: list[Record] = []
        self._ended = False

    def _read(self, limit: int, timeout: float | None) -> Awaitable[list[Record]]:
        if self.health is None or timeout is None:  # a read for ever may wait for records for ever: no bound
            return self.lane.read(limit, timeout)
        return self.health.watch(self._reading, timeout + STALL_GRACE, self.lane.read(limit, timeout))

    def _keep(self, records: list[Record]) -> list[Record]:
        self.counters.polled += len(records)
        if not self.filters or not records:
            return records
        kept: list[Record] = []
        dropped: list[Record] = []
        matches, source_view = self.filters.matches, self.view
        for record in records:
            seen = record.filter_view
            if seen is None:
                seen = record.payload if source_view is None else source_view(record)
            (kept if matches(seen) else dropped).append(record)
        if dropped:
            self.on_filtered(dropped)
        return kept

    async def next(self, until: float | None = None) -> list[Record]:
        """The next batch. Raises LaneEnded when the lane is gone.

        Waits for a first record until the monotonic time `until` (None: for ever) and returns [] if none came;
        nothing read is ever lost: records beyond a cut are carried into the next batch.
        """
        batch, self._carry = self._carry, []
        if not batch and self._ended:
            raise LaneEnded(self.lane.key)
        while not batch:
            timeout = None if until is None else max(0.0, until - time.monotonic())
            batch = self._keep(await self._read(self.size, timeout))
            if not batch and until is not None and time.monotonic() >= until:
                return []
        if self.window > 0:
            deadline = batch[0].received + self.window
            total = sum(map(_size, batch))
            while len(batch) < self.size and total < self.max_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    more = self._keep(await self._read(self.size - len(batch), remaining))
                except LaneEnded:
                    self._ended = True  # dispatch what was gathered; the next call says the lane ended
                    break
                except BaseException:
                    self._carry = batch  # read again later: records read are never dropped from a batch
                    raise
                batch.extend(more)
                total += sum(map(_size, more))
        return self._cut(batch)

    def _cut(self, batch: list[Record]) -> list[Record]:
        if self.boundary is None and len(batch) <= self.size and sum(map(_size, batch)) <= self.max_bytes:
            return batch  # the common case, without a per-record loop in Python
        total = 0
        edge = self.boundary(batch[0]) if self.boundary else None
        for i, record in enumerate(batch):
            total += record.size
            if (
                i >= self.size
                or (i > 0 and total > self.max_bytes)
                or (self.boundary is not None and self.boundary(record) != edge)
            ):
                self._carry = batch[i:]
                return batch[:i]
        return batch


class LaneWork:
    """What every lane runner of one mapping shares: its settings, its batching policy, its dispatcher, the
    batches in flight (which a stop waits for) and how batches settle."""

    def __init__(
        self,
        mapping: MappingConfig,
        source: Source,
        dispatcher: Dispatcher,
        counters: Counters,
        health: Health,
        max_in_flight: int,
    ) -> None:
        self.mapping = mapping
        self.name = mapping.display_name
        self.source = source
        self.dispatcher = dispatcher
        self.clock = dispatcher.clock
        self.counters = counters
        self.health = health
        self.max_in_flight = max_in_flight
        self.stopping = dispatcher.stopping
        self.filters = FilterSet.compile(mapping.patterns)
        self.batch_size = int(mapping.setting("batch_size") or 1)
        self.window = float(mapping.setting("maximum_batching_window") or 0.0)
        self.view = source.filter_view if isinstance(source, FilterViewSource) else None
        self.in_flight: set[asyncio.Task[Any]] = set()
        """Batches being dispatched: a stop lets them finish within its grace period."""
        self.settling: set[asyncio.Task[None]] = set()
        """Settles of filtered records: a stop waits for them."""
        self.deletes = mapping.spec.family == "queue"
        """A queue deletes (acks) what settles: counted as AWS's DeletedEventCount."""

    def batcher(
        self, lane: Lane, *, reading: Lane | None = None, boundary: Callable[[Record], object] | None = None
    ) -> Batcher:
        """The mapping's batching policy over `reading` (default: the lane itself); filtered records settle on
        `lane`; `boundary` as Batcher's."""
        return Batcher(
            reading or lane,
            self.batch_size,
            self.window,
            self.filters,
            lambda records: self.settle_filtered(lane, records),
            boundary=boundary,
            counters=self.counters,
            view=self.view,
            health=self.health if reading is None else None,  # a sub-lane's reads wait on the lane's reader
        )

    def start(self, coro: Coroutine[Any, Any, Any], group: set[asyncio.Task[Any]]) -> asyncio.Task[Any]:
        """Run `coro` as a task kept in `group` until it is done."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        group.add(task)
        task.add_done_callback(group.discard)
        return task

    def process(self, lane: Lane, records: Sequence[Record], *, again: bool = False) -> asyncio.Task[Any]:
        """Dispatch a batch and settle its outcome on `lane`, as a batch in flight. A dispatch that raises (a fault
        of the hub, never of the function) leaves the records unsettled: the lane reads them again, or with
        `again` (a sub-lane, whose later records of the same keys are already queued) this batch is dispatched
        again after a backoff, until the hub stops."""
        return self.start(self._process(lane, records, again), self.in_flight)

    async def dispatch(self, records: Sequence[Record], envelope: Envelope | None = None) -> Outcome:
        """Dispatch a batch as a batch in flight, without settling it (the caller settles). Shielded: stopping
        cancels the lane runner, never a batch in flight (the stop waits for those)."""
        return await asyncio.shield(self.start(self.dispatcher.dispatch(records, envelope), self.in_flight))

    async def _process(self, lane: Lane, records: Sequence[Record], again: bool) -> None:
        unsettled = Outcome(failed=tuple(records))
        faults = 0
        while True:
            try:
                outcome = await self.dispatcher.dispatch(records)
                break
            except asyncio.CancelledError:
                await self.settle(lane, unsettled)
                raise
            except Exception:
                faults += 1
                then = "dispatching them again" if again else "the lane reads them again"
                log.exception(
                    "dispatch failed unexpectedly; records stay unsettled, %s", then, extra=fields(mapping=self.name)
                )
            # not at once, so a fault that repeats is not a hot loop
            if not again:
                await self.settle(lane, unsettled)
                await sleep_unless(self.stopping, Backoff(1.0, 30.0).delay(faults))
                return
            if not await sleep_unless(self.stopping, Backoff(1.0, 30.0).delay(faults)):
                await self.settle(lane, unsettled)  # stopping: read again after a restart
                return
        await self.settle(lane, outcome)

    async def settle(self, lane: Lane, outcome: Outcome) -> None:
        """Settle an outcome on its lane, within SETTLE_BOUND; a failure marks the mapping degraded (the records
        are delivered again) and never raises."""
        what = f"settling lane {lane.key}"
        health = self.health
        watch = health.begin(what, SETTLE_BOUND)  # as Health.watch does, without a coroutine around each settle
        try:
            await lane.settle(outcome)
        except BaseException as exc:
            health.end(watch, succeeded=False)
            if not isinstance(exc, Exception):
                raise
            error = f"settling {len(outcome)} records on lane {lane.key} failed: {type(exc).__name__}: {exc}"
            if not health.fail(what, error + "; they will be delivered again"):
                log.debug("%s", error, extra=fields(mapping=self.name))
            return
        health.end(watch)
        if self.deletes:  # the queue deleted (or acked) what settled: AWS's DeletedEventCount
            self.counters.deleted += len(outcome.settled)

    def settle_filtered(self, lane: Lane, records: list[Record]) -> None:
        """Count records no filter matched and settle them on their lane, in the background."""
        self.counters.filtered_out += len(records)
        self.start(self.settle(lane, Outcome(filtered=tuple(records))), self.settling)

    async def read_failed(self, lane: Lane, exc: Exception, failures: int) -> None:
        """A lane's read raised (broker away, throttled): the mapping is degraded (logged once per change of
        state); back off, at most 5 s so that a broker that is back is noticed within seconds."""
        what = f"reading lane {lane.key}"
        self.health.fail(what, f"{what} failed: {type(exc).__name__}: {exc}; retrying")
        await sleep_unless(self.stopping, Backoff(0.2, 5.0).delay(failures))

    def read_recovered(self, lane: Lane, failures: int) -> int:
        """A read succeeded (after `failures` failed ones): the broker answers, so the lane's read problem and the
        settle that failed while it was away (its records are delivered again) are over; the new count (0)."""
        if failures:
            self.health.ok(f"reading lane {lane.key}")
        if self.health.problems:  # only then: nothing to format on the per-batch path of a healthy mapping
            self.health.ok(f"settling lane {lane.key}")
        return 0


LaneRunner = Callable[[LaneWork, Lane], Awaitable[None]]
"""Runs one lane until it ends or the mapping stops."""


async def run_plain_lane(work: LaneWork, lane: Lane) -> None:
    """Batches of the lane, one in flight for an ordered lane, up to `max_concurrency` for an unordered one."""
    room = asyncio.Semaphore(1 if lane.ordered else work.max_in_flight)
    batcher = work.batcher(lane)
    read_failures = 0
    while not work.stopping.is_set():
        await room.acquire()
        try:
            records = await batcher.next()
        except LaneEnded:
            room.release()
            break
        except asyncio.CancelledError:
            room.release()
            raise
        except Exception as exc:
            room.release()
            if cancelling():  # a library turned the cancellation into an error of its own (hub.backoff.cancelling)
                raise asyncio.CancelledError from exc
            read_failures += 1
            await work.read_failed(lane, exc, read_failures)
            continue
        read_failures = work.read_recovered(lane, read_failures)
        work.process(lane, records).add_done_callback(lambda _t: room.release())


async def run_parallel_lane(work: LaneWork, lane: Lane) -> None:
    """parallelization_factor: records of one ordered lane are spread over that many ordered sub-lanes by their
    order key (a partition key), each with one batch in flight; the source's tracker checkpoints contiguously."""
    parallelization = work.mapping.parallelization_factor
    subs = [_SubLane(lane, work.batch_size * 2) for _ in range(parallelization)]
    workers = [asyncio.ensure_future(_run_sub_lane(work, lane, sub)) for sub in subs]
    failures = 0
    try:
        while not work.stopping.is_set():
            try:
                records = await lane.read(work.batch_size, None)  # for ever: a connector bounds its own calls
            except LaneEnded:
                break
            except Exception as exc:
                failures += 1
                await work.read_failed(lane, exc, failures)
                continue
            failures = work.read_recovered(lane, failures)
            for record in records:
                await subs[_slot(record.order_key, len(subs))].queue.put(record)
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _run_sub_lane(work: LaneWork, lane: Lane, sub: _SubLane) -> None:
    batcher = work.batcher(lane, reading=sub)
    while not work.stopping.is_set():
        records = await batcher.next()
        # shielded: stopping cancels this worker, never a batch in flight (stop() waits for those)
        await asyncio.shield(work.process(lane, records, again=True))


class _SubLane:
    """One of the ordered sub-lanes of a lane read with parallelization_factor > 1."""

    ordered = True

    def __init__(self, parent: Lane, size: int) -> None:
        self.key = parent.key
        self.queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=max(1, size))

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return []
        out = [first]
        while len(out) < limit and not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    async def settle(self, outcome: Outcome) -> None:  # the parent lane settles; see LaneWork.process
        raise AssertionError("sub-lanes are settled through their parent lane")


def _slot(key: object, slots: int) -> int:
    if key is None:
        return 0
    data = key if isinstance(key, bytes) else str(key).encode()
    return zlib.crc32(data) % slots
