"""A mapping owns the loop: one task per lane that reads, filters, batches, dispatches and settles.

Back-pressure: a lane reads a new batch only when it has room in flight (one batch at a time for ordered
lanes, `max_concurrency` for unordered ones). Stop: stop reading, let in-flight batches finish within the grace
period, settle them, close the source. Connection trouble is retried with backoff and logged once per change.

The mapping's `state` is `connecting`, `running`, `degraded` (open, but a read or a settle failed, or did not return
within its bound: hub.health), `reconnecting` (opening the source failed; retrying) or `stopping`.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from hub.config import MappingConfig
from hub.dispatch import Backoff, Counters, Dispatcher, sleep_unless
from hub.filtering import FilterSet
from hub.health import SETTLE_BOUND, STALL_GRACE, Health, monitor
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


class MappingRunner:
    def __init__(
        self,
        mapping: MappingConfig,
        source: Source,
        dispatcher: Dispatcher,
        counters: Counters,
        *,
        max_in_flight: int,
        health: Health | None = None,
    ) -> None:
        self.mapping = mapping
        self.name = mapping.display_name
        self.source = source
        self.dispatcher = dispatcher
        self.counters = counters
        self.filters = FilterSet.compile(mapping.patterns)
        self.batch_size = int(mapping.setting("batch_size") or 1)
        self.window = float(mapping.setting("maximum_batching_window") or 0.0)
        self.max_in_flight = max_in_flight
        self.parallelization = mapping.parallelization_factor
        self.stopping = dispatcher.stopping
        self._readers: set[asyncio.Task[None]] = set()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._settling: set[asyncio.Task[None]] = set()
        self.health = health or Health(self.name)
        self.phase = "starting"
        """Where the lifecycle is: starting, connecting, running, reconnecting, stopping."""
        self.lanes: set[str] = set()

    @property
    def state(self) -> str:
        """What /status and /healthz show: the lifecycle phase, `degraded` while running with a problem."""
        return "degraded" if self.phase == "running" and self.health.degraded else self.phase

    @property
    def last_error(self) -> str:
        return self.health.last_error

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the source and run its lanes until stop(); reopen with backoff when the source fails."""
        watching = asyncio.ensure_future(monitor(self.health))
        try:
            await self._run()
        finally:
            watching.cancel()

    async def _run(self) -> None:
        backoff = Backoff(0.5, 30.0)
        failures = 0
        while not self.stopping.is_set():
            try:
                self.phase = "connecting" if not failures else "reconnecting"
                await self.source.open()
                if failures:
                    log.info("source reconnected", extra=fields(mapping=self.name, state="running"))
                failures = 0
                self.health.clear()
                self.phase = "running"
                async for lane in self.source.lanes():
                    self._start(self._run_lane(lane), self._readers)
                await self.stopping.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.phase = "reconnecting"
                self.health.clear()
                self.health.record(f"{type(exc).__name__}: {exc}")
                if failures == 1:
                    log.error(
                        "source failed: %s: %s; retrying",
                        type(exc).__name__,
                        exc,
                        extra=fields(mapping=self.name, state="reconnecting"),
                    )
                else:
                    log.debug("source still failing: %s", exc, extra=fields(mapping=self.name))
                await self._stop_readers()
                # batches in flight finish and settle before the source reopens: the new lanes re-read from the
                # checkpoint, and must not overlap a batch of the same lane
                if self._in_flight:
                    await asyncio.gather(*self._in_flight, return_exceptions=True)
                await self._close_source()
                await sleep_unless(self.stopping, backoff.delay(failures))

    async def stop(self, grace: float) -> None:
        """Stop reading, let in-flight batches finish (at most `grace` seconds), settle, close the source."""
        self.stopping.set()
        self.phase = "stopping"
        await self._stop_readers()
        if self._in_flight:
            _done, pending = await asyncio.wait(self._in_flight, timeout=grace)
            if pending:
                log.warning(
                    "%d batches still running after the %.1fs grace period; they will be delivered again",
                    len(pending),
                    grace,
                    extra=fields(mapping=self.name),
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self._close_source()
        await self.dispatcher.close()

    async def _stop_readers(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers.clear()

    async def _close_source(self) -> None:
        try:
            await self.source.close()
        except Exception as exc:
            log.warning("closing the source failed: %s", exc, extra=fields(mapping=self.name))

    def _start(self, coro: Coroutine[Any, Any, None], group: set[asyncio.Task[None]]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        group.add(task)
        task.add_done_callback(group.discard)
        return task

    # ---- one lane --------------------------------------------------------------------------------------------

    def batcher(
        self, lane: Lane, *, reading: Lane | None = None, boundary: Callable[[Record], object] | None = None
    ) -> Batcher:
        """The mapping's batching policy over `reading` (default: the lane itself); filtered records settle on
        `lane`."""
        return Batcher(
            reading or lane,
            self.batch_size,
            self.window,
            self.filters,
            lambda records: self._settle_filtered(lane, records),
            boundary=boundary,
            counters=self.counters,
            view=self.source.filter_view if isinstance(self.source, FilterViewSource) else None,
            health=self.health if reading is None else None,  # a sub-lane's reads wait on the lane's reader
        )

    async def _run_lane(self, lane: Lane) -> None:
        self.lanes.add(lane.key)
        try:
            await self._run_lane_kind(lane)
        finally:
            self.lanes.discard(lane.key)

    async def _run_lane_kind(self, lane: Lane) -> None:
        if lane.ordered and self.mapping.tumbling_window:
            from hub.windows import run_windowed_lane

            await run_windowed_lane(self, lane)
            return
        if lane.ordered and self.parallelization > 1:
            await self._run_parallel_lane(lane)
            return
        limit = 1 if lane.ordered else self.max_in_flight
        room = asyncio.Semaphore(limit)
        batcher = self.batcher(lane)
        read_failures = 0
        while not self.stopping.is_set():
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
                read_failures += 1
                await self.read_failed(lane, exc, read_failures)
                continue
            read_failures = self.read_recovered(lane, read_failures)
            task = self._start(self._process(lane, records), self._in_flight)
            task.add_done_callback(lambda _t: room.release())

    async def _process(self, lane: Lane, records: Sequence[Record]) -> None:
        try:
            outcome = await self.dispatcher.dispatch(records)
        except asyncio.CancelledError:
            await self._settle(lane, Outcome(failed=tuple(records)))
            raise
        except Exception:
            log.exception("dispatch failed unexpectedly; records stay unsettled", extra=fields(mapping=self.name))
            await self._settle(lane, Outcome(failed=tuple(records)))
            # the lane reads these records again: not at once, so a fault that repeats is not a hot loop
            await sleep_unless(self.stopping, Backoff(1.0, 30.0).delay(1))
            return
        await self._settle(lane, outcome)

    async def read_failed(self, lane: Lane, exc: Exception, failures: int) -> None:
        """A lane's read raised (broker away, throttled): the mapping is degraded (logged once per change of
        state); back off, at most 5 s so that a broker that is back is noticed within seconds."""
        what = f"reading lane {lane.key}"
        self.health.fail(what, f"{what} failed: {type(exc).__name__}: {exc}; retrying")
        await sleep_unless(self.stopping, Backoff(0.2, 5.0).delay(failures))

    def read_recovered(self, lane: Lane, failures: int) -> int:
        if failures:
            self.health.ok(f"reading lane {lane.key}")
        return 0

    async def _settle(self, lane: Lane, outcome: Outcome) -> None:
        what = f"settling lane {lane.key}"
        try:
            await self.health.watch(what, SETTLE_BOUND, lane.settle(outcome))
        except Exception as exc:
            error = f"settling {len(outcome)} records on lane {lane.key} failed: {type(exc).__name__}: {exc}"
            if not self.health.fail(what, error + "; they will be delivered again"):
                log.debug("%s", error, extra=fields(mapping=self.name))

    def _settle_filtered(self, lane: Lane, records: list[Record]) -> None:
        self.counters.filtered_out += len(records)
        self._start(self._settle(lane, Outcome(filtered=tuple(records))), self._settling)

    # ---- parallelization_factor: several batches of one ordered lane in flight, order kept per key ----------

    async def _run_parallel_lane(self, lane: Lane) -> None:
        """Records of one lane are spread over `parallelization_factor` ordered sub-lanes by their order key
        (a partition key), each with one batch in flight; the source's tracker checkpoints contiguously."""
        subs = [_SubLane(lane, self.batch_size * 2) for _ in range(self.parallelization)]
        workers = [asyncio.ensure_future(self._run_sub_lane(lane, sub)) for sub in subs]
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    records = await lane.read(self.batch_size, None)  # for ever: a connector bounds its own calls
                except LaneEnded:
                    break
                except Exception as exc:
                    failures += 1
                    await self.read_failed(lane, exc, failures)
                    continue
                failures = self.read_recovered(lane, failures)
                for record in records:
                    await subs[_slot(record.order_key, len(subs))].queue.put(record)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _run_sub_lane(self, lane: Lane, sub: _SubLane) -> None:
        batcher = self.batcher(lane, reading=sub)
        while not self.stopping.is_set():
            records = await batcher.next()
            # shielded: stopping cancels this worker, never a batch in flight (stop() waits for those)
            await asyncio.shield(self._start(self._process(lane, records), self._in_flight))


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

    async def settle(self, outcome: Outcome) -> None:  # the parent lane settles; see _process
        raise AssertionError("sub-lanes are settled through their parent lane")


def _slot(key: object, slots: int) -> int:
    if key is None:
        return 0
    data = key if isinstance(key, bytes) else str(key).encode()
    return zlib.crc32(data) % slots
