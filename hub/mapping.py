"""A mapping owns the loop: it opens its source and runs one task per lane, with the lane runner that suits the
lane (hub/lanes.py: plain or parallel; hub/windows.py: tumbling windows), which reads, filters, batches,
dispatches and settles.

Stop: stop reading, let in-flight batches finish within the grace period, settle them, close the source.
Connection trouble is retried with backoff and logged once per change.

The mapping's `state` is `connecting`, `running`, `degraded` (open, but a read or a settle failed, or did not return
within its bound: hub.health), `reconnecting` (opening the source failed; retrying) or `stopping`.
"""

from __future__ import annotations

import asyncio
import logging

from hub.backoff import Backoff, sleep_unless
from hub.config import MappingConfig
from hub.dispatch import Counters, Dispatcher
from hub.health import Health, monitor
from hub.lanes import LaneRunner, LaneWork, run_parallel_lane, run_plain_lane
from hub.logs import fields
from hub.source import Lane, Source
from hub.windows import run_windowed_lane

log = logging.getLogger("hub.mapping")


class MappingRunner:
    """One event source mapping in this process: opens its source, runs a lane runner per lane (hub.lanes,
    hub.windows) and stops gracefully. What its lanes share is its `work` (hub.lanes.LaneWork)."""

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
        self.stopping = dispatcher.stopping
        self.health = health or Health(self.name)
        self.work = LaneWork(mapping, source, dispatcher, counters, self.health, max_in_flight)
        self._readers: set[asyncio.Task[None]] = set()
        self.phase = "starting"
        """Where the lifecycle is: starting, connecting, running, reconnecting, stopping."""
        self.lanes: set[str] = set()

    @property
    def state(self) -> str:
        """What /status and /healthz show: the lifecycle phase, `degraded` while running with a problem."""
        return "degraded" if self.phase == "running" and self.health.degraded else self.phase

    @property
    def last_error(self) -> str:
        """The most recent problem of the mapping's source, kept after it recovered ("" if there never was one)."""
        return self.health.last_error

    @property
    def in_flight_batches(self) -> int:
        """Batches being dispatched now (what /status shows)."""
        return len(self.work.in_flight)

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
                    self.work.start(self._run_lane(lane), self._readers)
                await self.stopping.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping.is_set():
                    # failing while the hub stops (a source that drops its connection as the last batches settle):
                    # nothing is reopened, and stop() closes the source
                    log.debug("source ended while stopping: %s", exc, extra=fields(mapping=self.name))
                    return
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
                if self.work.in_flight:
                    await asyncio.gather(*self.work.in_flight, return_exceptions=True)
                await self._close_source()
                await sleep_unless(self.stopping, backoff.delay(failures))

    async def stop(self, grace: float) -> None:
        """Stop reading, let in-flight batches finish (at most `grace` seconds), settle, close the source."""
        self.stopping.set()
        self.phase = "stopping"
        await self._stop_readers()
        if self.work.in_flight:
            _done, pending = await asyncio.wait(self.work.in_flight, timeout=grace)
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
        if self.work.settling:
            await asyncio.gather(*self.work.settling, return_exceptions=True)
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

    # ---- one lane --------------------------------------------------------------------------------------------

    def lane_runner(self, lane: Lane) -> LaneRunner:
        """The runner of a lane: tumbling windows, parallelization_factor sub-lanes, or plain batches."""
        if lane.ordered and self.mapping.tumbling_window:
            return run_windowed_lane
        if lane.ordered and self.mapping.parallelization_factor > 1:
            return run_parallel_lane
        return run_plain_lane

    async def _run_lane(self, lane: Lane) -> None:
        self.lanes.add(lane.key)
        try:
            await self.lane_runner(lane)(self.work, lane)
        finally:
            self.lanes.discard(lane.key)
