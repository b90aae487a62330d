"""What a function's invocations leave behind (hub/invocations.py) and what the monitor makes of a mapping's
counters and lag over time (hub/history.py): pure logic, on a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from hub import redact
from hub.config import FunctionConfig
from hub.dispatch import Counters
from hub.functions import Function
from hub.history import INTERVAL, KEEP, Monitor, Watched
from hub.invocations import Activity
from hub.records import Lag
from hub.runtimes import Result, error_payload


def result(ok: bool = True, error: str | None = None, duration: float = 0.02, message: str = "boom") -> Result:
    payload = {"ok": True} if ok else error_payload("ValueError", message)
    return Result(ok, payload, duration, f"id-{duration}", error)


def test_invocations_are_counted_as_aws_counts_them_and_kept_newest_first() -> None:
    activity = Activity(keep=3)
    activity.record("f", "orders", 100.0, result(duration=0.003), records=5, attempt=1)
    activity.record("f", "orders", 101.0, result(False, "Unhandled", 0.2), records=5, attempt=2)
    activity.record("f", "orders", 102.0, result(False, "Timeout", 3.0), records=5, attempt=3)
    activity.record("f", "orders", 103.0, result(False, "Throttled", 0.0), records=5, attempt=4)
    activity.record("g", "audit", 104.0, result(), records=1, attempt=1)
    stats = activity.functions["f"]
    assert (stats.invocations, stats.errors, stats.throttles) == (3, 2, 1)  # a throttled one never ran
    assert sum(stats.buckets) == 3 and stats.duration_sum == pytest.approx(3.203)
    assert stats.buckets[0] == 1  # 3 ms is in the first bucket (<= 5 ms)
    orders = activity.latest("orders")
    assert [e.outcome for e in orders] == ["throttled", "timeout", "error"]  # the ring keeps 3, newest first
    assert orders[2].as_dict() == {
        "request_id": "id-0.2",
        "function": "f",
        "mapping": "orders",
        "started": 101.0,
        "duration_ms": 200.0,
        "outcome": "error",
        "error": "ValueError: boom",
        "records": 5,
        "attempt": 2,
    }
    assert [e.mapping for e in activity.latest()] == ["audit", "orders", "orders", "orders"]
    assert [e.function for e in activity.latest(function="g")] == ["g"]
    assert len(activity.latest(limit=2)) == 2 and activity.latest("nothing") == []


def test_an_error_message_is_masked_and_nothing_of_the_event_or_result_is_kept() -> None:
    redact.remember(["hunter2-secret"])
    activity = Activity()
    entry = activity.record("f", "m", 1.0, result(False, "Unhandled", message="login hunter2-secret refused"), 1, 1)
    assert entry.error == "ValueError: login *** refused"
    assert set(entry.as_dict()) == {
        "request_id",
        "function",
        "mapping",
        "started",
        "duration_ms",
        "outcome",
        "error",
        "records",
        "attempt",
    }


async def test_a_function_records_its_invocations_and_its_concurrency() -> None:
    activity = Activity()
    fn = Function(
        "slowish",
        FunctionConfig(runtime="in-process", handler="functions.testing.sleeps_async", timeout=5),
        region="us-east-1",
        account_id="000000000000",
        activity=activity,
    )
    await fn.start()
    try:
        running = [asyncio.ensure_future(fn.invoke({"seconds": 1.0}, mapping="m")) for _ in range(3)]
        stats = activity.functions["slowish"]
        await until(lambda: stats.concurrent == 3 or all(task.done() for task in running))
        seen_running = stats.concurrent
        await asyncio.gather(*running)
    finally:
        await fn.close()
    assert seen_running == 3
    assert activity.functions["slowish"].concurrent == 0
    assert activity.functions["slowish"].invocations == 3
    assert [e.outcome for e in activity.latest("m")] == ["success"] * 3


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Lagging:
    """A source that tells a lag the test sets (or fails to)."""

    def __init__(self) -> None:
        self.lags: Mapping[str, Lag] = {}
        self.fails = False

    async def lag(self) -> Mapping[str, Lag]:
        if self.fails:
            raise ConnectionError("broker away")
        return self.lags


async def settle_asks() -> None:
    """Let the monitor's requests of the lag (tasks of their own) answer."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_monitor_samples_rates_and_lag_and_the_last_minute() -> None:
    clock, counters, source = Clock(), Counters(), Lagging()
    watched = {"orders": Watched(counters, source)}
    monitor = Monitor(lambda: watched, clock)
    source.lags = {"t-0": Lag(offset_lag=5), "t-1": Lag(offset_lag=12)}
    monitor.tick()  # the first sample, at once
    await settle_asks()
    assert monitor.lag("orders") == {"offset_lag": 12}
    assert monitor.lanes("orders") == {"t-0": {"offset_lag": 5}, "t-1": {"offset_lag": 12}}
    for _ in range(12):  # two minutes: 100 records polled and 50 invoked every 10 s, 10 failed
        clock.now += INTERVAL / 2
        monitor.tick()
        await settle_asks()
        clock.now += INTERVAL / 2
        counters.polled += 100
        counters.invoked += 50
        counters.failed_invoke += 10
        monitor.tick()
        await settle_asks()
    samples = monitor.history()["mappings"]["orders"]
    assert monitor.history()["interval_s"] == 10
    assert len(samples) == 13 and samples[0]["polled_per_s"] == 0.0
    assert samples[-1] == {
        "t": clock.now,
        "polled_per_s": 10.0,
        "invoked_per_s": 5.0,
        "failed_per_s": 1.0,
        "lag": {"offset_lag": 12},
    }
    minute = monitor.last_minute("orders", counters)
    assert minute == {
        "polled": 600,
        "invoked": 300,
        "failed_invoke": 60,
        "dropped": 0,
        "seconds": 60.0,
        "polled_per_s": 10.0,
        "invoked_per_s": 5.0,
    }


async def test_a_young_mapping_counts_its_minute_from_its_first_sample() -> None:
    clock, counters = Clock(), Counters()
    monitor = Monitor(lambda: {"new": Watched(counters, None)}, clock)
    assert monitor.last_minute("new", counters)["polled_per_s"] == 0.0  # no sample yet
    monitor.tick()
    clock.now += 4
    counters.polled = 20
    minute = monitor.last_minute("new", counters)
    assert minute["polled"] == 20 and minute["seconds"] == 4.0 and minute["polled_per_s"] == 5.0


async def test_lag_is_unknown_when_the_source_fails_to_tell_or_the_mapping_is_disabled() -> None:
    clock, counters, source = Clock(), Counters(), Lagging()
    watched = {"q": Watched(counters, source)}
    monitor = Monitor(lambda: watched, clock)
    source.lags = {"queue": Lag(backlog=7, oldest_message_age_s=3.5)}
    monitor.tick()
    await settle_asks()
    assert monitor.lag("q") == {"backlog": 7, "oldest_message_age_s": 3.5}
    source.fails = True
    clock.now += 5
    monitor.tick()
    await settle_asks()
    assert monitor.lag("q") == {}
    source.fails = False
    clock.now += 5
    monitor.tick()
    await settle_asks()
    assert monitor.lag("q") == {"backlog": 7, "oldest_message_age_s": 3.5}
    watched["q"] = Watched(counters, None)  # disabled: no source
    monitor.tick()
    assert monitor.lag("q") == {} and monitor.lanes("q") == {}
    del watched["q"]  # deleted: its history goes
    monitor.tick()
    assert monitor.history()["mappings"] == {}


async def test_the_history_keeps_an_hour() -> None:
    clock, counters = Clock(), Counters()
    monitor = Monitor(lambda: {"m": Watched(counters, None)}, clock)
    for _ in range(KEEP + 20):
        monitor.tick()
        clock.now += INTERVAL
    samples = monitor.history()["mappings"]["m"]
    assert len(samples) == KEEP and samples[-1]["t"] - samples[0]["t"] == (KEEP - 1) * INTERVAL
