"""What this process's functions did: the recent invocations of each mapping, and each function's counts.

`Function.invoke` records every invocation here (`Activity.record`): a few counters, one bucket of a duration
histogram and one small entry in a ring per mapping, never the event or the result (they may hold secrets); the
error message of a failed one is masked as log lines are (hub/redact.py). The admin endpoint reads it:
`/invocations` (the rings) and `/metrics` (the counts, through hub.metrics).

One `Activity` serves the whole process (`ACTIVITY`): functions replaced by a reload keep counting where their
predecessors stopped, as Prometheus counters should.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hub import redact
from hub.runtimes import Result

RECENT = 200
"""Invocations kept per mapping (invocations outside any mapping, `hub invoke`, are kept under "")."""

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
"""Upper bounds, in seconds, of the `Duration` histogram's buckets (Lambda's timeouts go up to 900 s)."""

OUTCOMES = {None: "success", "Unhandled": "error", "Timeout": "timeout", "Throttled": "throttled"}
"""A Result's `error` as /invocations names it; any other error is shown in lower case."""


@dataclass(slots=True)
class Invocation:
    """One invocation, as /invocations shows it."""

    request_id: str
    function: str
    mapping: str
    started: float
    """Epoch seconds."""
    duration_ms: float
    outcome: str
    error: str | None
    """`Type: message`, masked (hub/redact.py); None for a success."""
    records: int
    attempt: int

    def as_dict(self) -> dict[str, Any]:
        """The invocation as /invocations shows it."""
        return {
            "request_id": self.request_id,
            "function": self.function,
            "mapping": self.mapping or None,
            "started": round(self.started, 3),
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "error": self.error,
            "records": self.records,
            "attempt": self.attempt,
        }


@dataclass(slots=True)
class FunctionStats:
    """One function's counts, named as AWS's Lambda metrics: Invocations, Errors, Throttles, ConcurrentExecutions
    and the Duration histogram (seconds)."""

    invocations: int = 0
    """Invocations that ran (AWS does not count throttled ones)."""
    errors: int = 0
    """Invocations that failed in the function: an error, a timeout (AWS counts both)."""
    throttles: int = 0
    concurrent: int = 0
    """Invocations running now."""
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    """Invocations per duration bucket (not cumulative; the last one is above every bound)."""
    duration_sum: float = 0.0


class Activity:
    """The recent invocations per mapping and the counts per function, of one process."""

    def __init__(self, keep: int = RECENT) -> None:
        self.keep = keep
        self.recent: dict[str, deque[Invocation]] = {}
        self.functions: dict[str, FunctionStats] = {}

    def stats(self, function: str) -> FunctionStats:
        """The counts of a function (made on first use)."""
        found = self.functions.get(function)
        if found is None:
            found = self.functions[function] = FunctionStats()
        return found

    def record(
        self, function: str, mapping: str, started: float, result: Result, records: int, attempt: int
    ) -> Invocation:
        """Count a finished invocation and keep it in its mapping's ring."""
        stats = self.stats(function)
        outcome = OUTCOMES.get(result.error) or (result.error or "error").lower()
        if result.error == "Throttled":  # it never ran: no invocation, no duration (as AWS counts)
            stats.throttles += 1
        else:
            stats.invocations += 1
            stats.errors += not result.ok
            stats.buckets[bisect.bisect_left(DURATION_BUCKETS, result.duration)] += 1
            stats.duration_sum += result.duration
        entry = Invocation(
            request_id=result.request_id,
            function=function,
            mapping=mapping,
            started=started,
            duration_ms=round(result.duration * 1000, 3),
            outcome=outcome,
            error=None if result.ok else redact.text(result.error_message),
            records=records,
            attempt=attempt,
        )
        ring = self.recent.get(mapping)
        if ring is None:
            ring = self.recent[mapping] = deque(maxlen=self.keep)
        ring.append(entry)
        return entry

    def latest(self, mapping: str | None = None, function: str | None = None, limit: int = RECENT) -> list[Invocation]:
        """The most recent invocations, newest first: of one mapping, or of every mapping; of one function or all."""
        rings = [self.recent.get(mapping, ())] if mapping is not None else list(self.recent.values())
        found = [entry for ring in rings for entry in ring if function is None or entry.function == function]
        found.sort(key=lambda entry: entry.started, reverse=True)
        return found[: max(0, limit)]


ACTIVITY = Activity()
"""This process's activity: what every Function records into unless it is given another."""
