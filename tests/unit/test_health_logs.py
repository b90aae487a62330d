"""Pure logic of the health of a mapping (hub.health) and of the gate on client libraries' log lines (hub.logs)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from hub import logs
from hub.health import Health


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def gated() -> tuple[logging.Logger, Capture, logs.RepeatGate, Clock]:
    clock = Clock()
    gate = logs.RepeatGate(quiet=5.0, every=60.0, clock=clock)
    capture = Capture()
    capture.addFilter(gate)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [capture]
    root.setLevel(logging.DEBUG)
    yield logging.getLogger("aiokafka"), capture, gate, clock
    root.handlers[:], level = saved
    root.setLevel(level)


def test_a_library_line_passes_once_then_its_repeats_are_counted_once_it_stops(gated: Any) -> None:
    library, capture, gate, clock = gated
    for node in range(500):
        library.error("Unable connect to node with id %s: %s", node, "refused")
        clock.now += 0.01
    library.error("Unable to update metadata from %s", [111])
    assert capture.lines == [
        "aiokafka: Unable connect to node with id 0: refused",
        "aiokafka: Unable to update metadata from [111]",
    ]
    clock.now += 4.0
    gate.flush()
    assert len(capture.lines) == 2  # not quiet for long enough yet
    clock.now += 1.0
    gate.flush()
    assert capture.lines[2] == "aiokafka: Unable connect to node with id 499: refused (repeated 499 times in 5s)"
    assert len(capture.lines) == 3  # the metadata line never repeated: nothing to add
    library.error("Unable connect to node with id %s: %s", 1, "refused")
    assert capture.lines[3] == "aiokafka: Unable connect to node with id 1: refused"  # a new episode shows again


def test_a_kind_that_goes_on_is_summed_up_every_period_and_at_exit(gated: Any) -> None:
    library, capture, gate, clock = gated
    for _ in range(130):
        library.warning("Heartbeat failed")
        clock.now += 1.0
        gate.flush()
    assert capture.lines == [
        "aiokafka: Heartbeat failed",
        "aiokafka: Heartbeat failed (repeated 59 times in 59s)",
        "aiokafka: Heartbeat failed (repeated 60 times in 59s)",
    ]
    gate.flush(final=True)
    assert capture.lines[-1] == "aiokafka: Heartbeat failed (repeated 10 times in 9s)"


def test_the_hubs_own_lines_pass_untouched_and_let_due_counts_out(gated: Any) -> None:
    library, capture, _gate, clock = gated
    hub = logging.getLogger("hub.mapping")
    library.error("Failed fetch messages from %s", 111)
    library.error("Failed fetch messages from %s", 111)
    for _ in range(3):
        hub.error("the same line of the hub")
    clock.now += 6.0
    hub.info("the source answers again")
    assert capture.lines == [
        "aiokafka: Failed fetch messages from 111",
        *["hub.mapping: the same line of the hub"] * 3,
        "aiokafka: Failed fetch messages from 111 (repeated 1 time in 0s)",
        "hub.mapping: the source answers again",
    ]


def test_health_is_degraded_while_any_problem_stands_and_logs_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health("orders")
    with caplog.at_level(logging.DEBUG, logger="hub.health"):
        assert health.fail("reading lane a", "reading lane a failed: ConnectionError: refused")
        assert not health.fail("reading lane a", "reading lane a failed: TimeoutError")
        assert health.fail("settling lane b", "settling lane b failed")
        assert health.degraded and health.last_error == "settling lane b failed"
        health.ok("reading lane a")
        assert health.degraded
        health.ok("settling lane b")
        health.ok("settling lane b")
    assert not health.degraded and health.last_error == "settling lane b failed"  # kept after the recovery
    changes = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(changes) == 2
    assert changes[0].startswith("reading lane a failed: ConnectionError: refused; the mapping is degraded")
    assert changes[1].startswith("the source answers again; the mapping is running")


def test_a_watched_call_past_its_bound_degrades_and_its_answer_recovers() -> None:
    async def scenario() -> None:
        health = Health("orders")
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        call = asyncio.ensure_future(health.watch("kafka brokers", 2.0, answer))
        await asyncio.sleep(0)
        health.check(now=asyncio.get_running_loop().time() + 1.0)  # the loop's clock is the monotonic one
        assert not health.degraded
        health.check(now=1e12)
        assert health.degraded and "kafka brokers: no answer" in health.last_error
        answer.set_result("metadata")
        assert await call == "metadata"
        assert not health.degraded

        failing = asyncio.ensure_future(health.watch("kafka brokers", 2.0, asyncio.sleep(0, result=None)))
        await failing
        assert not health.degraded

    asyncio.run(scenario())
