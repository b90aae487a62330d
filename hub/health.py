"""A mapping's health: what its loop and its source report about the broker, and the state that adds up to.

The mapping loop reports what it sees itself: a read or a settle that raised, and (through watches) a read or a
settle that did not return within its bound, which is how a broker that hangs without closing its connections is
noticed. A connector reports what only it can see, where its client library retries inside and never raises (the
`kafka` connector probes its brokers). While any problem stands the mapping is `degraded`; once every one has
cleared it is `running` again. Each change of state is logged once; what happens in between is logged at debug.

Problems are keyed by what failed (`reading lane orders-0`, `settling lane orders-0`, `kafka brokers`), so that a
read that succeeds clears a failed read of its lane and nothing else.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from hub.logs import fields

log = logging.getLogger("hub.health")
T = TypeVar("T")

STALL_GRACE = 3.0
"""How long a read may overrun its own timeout before the source counts as not answering."""
SETTLE_BOUND = 10.0
"""How long a settle (a commit, an ack, a delete) may take before the source counts as not answering."""


class Health:
    """The problems of one mapping's source, and the watches on the broker calls in progress.

    `fail(what, error)` records a problem; `ok(what)` clears it. `begin(what, bound)` starts a watch on a call
    that should return within `bound` seconds and `end(token)` ends it (clearing `what` when the call succeeded);
    `check()` turns every watch past its bound into a problem. Nothing here blocks or awaits: the mapping's
    monitor calls `check()` about twice a second.
    """

    def __init__(self, mapping: str = "") -> None:
        self.mapping = mapping
        self.problems: dict[str, str] = {}
        self.last_error = ""
        """The most recent error, kept after the mapping recovers (None in /status if there never was one)."""
        self.since = time.monotonic()
        """When the current state began (monotonic)."""
        self._watches: dict[int, tuple[str, float, float]] = {}
        self._tokens = itertools.count()

    @property
    def degraded(self) -> bool:
        """True while a problem stands."""
        return bool(self.problems)

    def fail(self, what: str, error: str) -> bool:
        """Record that `what` failed with `error`. True if it is a new problem (the caller may log it)."""
        self.last_error = error
        new = what not in self.problems
        self.problems[what] = error
        if new and len(self.problems) == 1:
            self.since = time.monotonic()
            log.error(
                "%s; the mapping is degraded until the source answers again",
                error,
                extra=fields(mapping=self.mapping, state="degraded"),
            )
        elif new:
            log.debug("also: %s", error, extra=fields(mapping=self.mapping))
        return new

    def ok(self, what: str) -> None:
        """`what` succeeded: clear its problem; log once if that was the last one."""
        if self.problems.pop(what, None) is None or self.problems:
            return
        took, self.since = time.monotonic() - self.since, time.monotonic()
        log.info(
            "the source answers again; the mapping is running (degraded for %.1fs)",
            took,
            extra=fields(mapping=self.mapping, state="running"),
        )

    def record(self, error: str) -> None:
        """Remember `error` as the last one without a problem (the mapping reports reopening on its own)."""
        self.last_error = error

    def clear(self) -> None:
        """Forget every problem and watch, silently: the source is being closed and opened again."""
        self.problems.clear()
        self._watches.clear()
        self.since = time.monotonic()

    def begin(self, what: str, bound: float) -> int:
        """Watch a call on `what` that should return within `bound` seconds; pass the token to end()."""
        token = next(self._tokens)
        now = time.monotonic()
        self._watches[token] = (what, now, now + bound)
        return token

    def end(self, token: int, succeeded: bool = True) -> None:
        """The watched call returned; if it succeeded, its `what` is healthy again."""
        watch = self._watches.pop(token, None)
        if succeeded and watch is not None and self.problems:
            self.ok(watch[0])

    def check(self, now: float | None = None) -> None:
        """Every watched call past its bound is a problem: the source does not answer."""
        now = time.monotonic() if now is None else now
        for what, started, due in list(self._watches.values()):
            if now > due and what not in self.problems:
                self.fail(what, f"{what}: no answer from the source for {now - started:.1f}s")

    async def watch(self, what: str, bound: float, call: Awaitable[T]) -> T:
        """Await `call` under a watch of `bound` seconds (see begin); a call that succeeds clears `what`."""
        token = self.begin(what, bound)
        try:
            result = await call
        except BaseException:
            self.end(token, succeeded=False)
            raise
        self.end(token)
        return result


async def monitor(health: Health, every: float = 0.5) -> None:
    """Check `health`'s watches every `every` seconds, and let quiet library log kinds say how often they repeated."""
    from hub.logs import flush_repeats

    while True:
        await asyncio.sleep(every)
        health.check()
        flush_repeats()
