"""What the admin endpoint shows over time: each mapping's lag, its last minute, and its last hour.

A `Monitor` runs in the hub while the admin endpoint is on. Every LAG_EVERY seconds it asks each mapping's source
for its lag (hub.source.LagSource; bounded by LAG_BOUND, never two requests of one source at once), and every
INTERVAL seconds it takes a sample of each mapping: its counters, its rates over the interval and its lag, kept
for an hour (KEEP samples). It never touches the hot path: counters are read, never written.

- `lag(name)`: the mapping's lag, the largest of each field over its lanes; `lanes(name)`: per lane.
- `last_minute(name)`: records polled, invoked, failed and dropped since the sample closest to a minute ago (or
  since the first sample, for a mapping younger than that), and the rates of polling and invoking over that span.
- `history()`: GET /history's answer.

Counts are this process's, as /status's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hub.invocation import Counters
from hub.records import Lag
from hub.source import LagSource

log = logging.getLogger("hub.history")

INTERVAL = 10
"""Seconds between two samples of the history."""
KEEP = 360
"""Samples kept per mapping: an hour."""
LAG_EVERY = 5.0
"""Seconds between two requests of a source's lag."""
LAG_BOUND = 4.0
"""Seconds a source may take to tell its lag; past that it is unknown until the next request."""
MINUTE = 60.0

COUNTED = ("polled", "invoked", "failed_invoke", "dropped")
"""The counters a sample keeps (and /status's last_minute shows)."""


class Watched(NamedTuple):
    """A mapping as the monitor sees it: its counters, and its source while it runs (None: disabled)."""

    counters: Counters
    source: object | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample of a mapping: its counters at `t`, its rates over the interval before, and its lag."""

    t: float
    """Epoch seconds."""
    counts: tuple[int, ...]
    """The counters named in COUNTED, at `t`."""
    polled_per_s: float
    invoked_per_s: float
    failed_per_s: float
    lag: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """The sample as GET /history shows it."""
        return {
            "t": round(self.t, 3),
            "polled_per_s": self.polled_per_s,
            "invoked_per_s": self.invoked_per_s,
            "failed_per_s": self.failed_per_s,
            "lag": dict(self.lag),
        }


@dataclass
class _Mapping:
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=KEEP))
    lanes: dict[str, Lag] = field(default_factory=dict)
    asking: asyncio.Task[None] | None = None


def counts(counters: Counters) -> tuple[int, ...]:
    """The counters named in COUNTED, in that order."""
    return tuple(int(getattr(counters, name)) for name in COUNTED)


def worst(lags: Mapping[str, Lag]) -> dict[str, float]:
    """The largest value of each field over the lanes (a mapping is as far behind as its furthest lane)."""
    out: dict[str, float] = {}
    for lag in lags.values():
        for name, value in lag.as_dict().items():
            if name not in out or value > out[name]:
                out[name] = value
    return out


def _rate(delta: int, seconds: float) -> float:
    return round(delta / seconds, 3) if seconds > 0 else 0.0


class Monitor:
    """Samples the mappings `watched()` returns (by name), as the module docstring says."""

    def __init__(self, watched: Callable[[], Mapping[str, Watched]], clock: Callable[[], float] = time.time) -> None:
        self.watched = watched
        self.clock = clock
        self._mappings: dict[str, _Mapping] = {}
        self._last_sample: float | None = None

    # ---- what the admin endpoint reads -------------------------------------------------------------------------

    def lag(self, name: str) -> dict[str, float]:
        """The mapping's lag: the largest of each field over its lanes ({} when it tells none)."""
        state = self._mappings.get(name)
        return worst(state.lanes) if state is not None else {}

    def lanes(self, name: str) -> dict[str, dict[str, float]]:
        """The mapping's lag per lane, by lane key."""
        state = self._mappings.get(name)
        return {key: lag.as_dict() for key, lag in sorted(state.lanes.items())} if state is not None else {}

    def last_minute(self, name: str, counters: Counters) -> dict[str, Any]:
        """Records polled, invoked, failed and dropped since the sample closest to a minute ago (since the first
        sample for a younger mapping), and the rates of polling and invoking over that span."""
        now = self.clock()
        state = self._mappings.get(name)
        current = counts(counters)
        since: Sample | None = None
        for sample in reversed(state.samples if state is not None else ()):
            since = sample
            if sample.t <= now - MINUTE:
                break
        base, seconds = (since.counts, now - since.t) if since is not None else ((0,) * len(COUNTED), 0.0)
        delta = dict(zip(COUNTED, (c - b for c, b in zip(current, base, strict=True)), strict=True))
        return {
            **delta,
            "seconds": round(seconds, 3),
            "polled_per_s": _rate(delta["polled"], seconds),
            "invoked_per_s": _rate(delta["invoked"], seconds),
        }

    def history(self) -> dict[str, Any]:
        """GET /history's answer: every mapping's samples of the last hour."""
        return {
            "interval_s": INTERVAL,
            "mappings": {name: [s.as_dict() for s in state.samples] for name, state in self._mappings.items()},
        }

    # ---- sampling --------------------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Sample until `stopping` is set: at once, then every LAG_EVERY seconds."""
        try:
            while not stopping.is_set():
                self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), LAG_EVERY)
        finally:
            for state in self._mappings.values():
                if state.asking is not None:
                    state.asking.cancel()

    def tick(self) -> None:
        """Ask each running source for its lag (in the background) and, every INTERVAL, take a sample."""
        watched = self.watched()
        for name in set(self._mappings) - set(watched):
            gone = self._mappings.pop(name)  # deleted: its history goes with it
            if gone.asking is not None:
                gone.asking.cancel()
        for name, (_counters, source) in watched.items():
            state = self._mappings.setdefault(name, _Mapping())
            if not isinstance(source, LagSource):
                state.lanes = {}  # disabled, or a source that does not tell: no lag shown
            elif state.asking is None or state.asking.done():
                state.asking = asyncio.ensure_future(self._ask(name, state, source))
        now = self.clock()
        # a little early is on time: ticks come every LAG_EVERY seconds, and a sample every other one
        if self._last_sample is None or now - self._last_sample >= INTERVAL - LAG_EVERY / 2:
            self._last_sample = now
            for name, (counters, _source) in watched.items():
                self._sample(self._mappings[name], counters, now)

    def _sample(self, state: _Mapping, counters: Counters, now: float) -> None:
        current = counts(counters)
        previous = state.samples[-1] if state.samples else None
        seconds = now - previous.t if previous is not None else 0.0
        base = previous.counts if previous is not None else current
        polled, invoked, failed, _dropped = (c - b for c, b in zip(current, base, strict=True))
        state.samples.append(
            Sample(
                now,
                current,
                _rate(polled, seconds),
                _rate(invoked, seconds),
                _rate(failed, seconds),
                worst(state.lanes),
            )
        )

    async def _ask(self, name: str, state: _Mapping, source: LagSource) -> None:
        try:
            lags = await asyncio.wait_for(source.lag(), LAG_BOUND)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # unknown until the next request; the mapping itself is not affected
            log.debug("asking for the lag failed: %s: %s", type(exc).__name__, exc, extra={"fields": {"mapping": name}})
            state.lanes = {}
            return
        state.lanes = dict(lags)
