"""The invocation log: every failure on its own line; successes one by one up to a rate, then summed up."""

from __future__ import annotations

import logging

import pytest

import hub.functions
from hub.config import FunctionConfig
from hub.functions import LOG_EACH_PER_SECOND, Function


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(hub.functions, "_now", fake.monotonic)
    return fake


async def function(handler: str) -> Function:

    fn = Function(
        "f",
        FunctionConfig(runtime="in-process", handler=handler, timeout=5),
        region="us-east-1",
        account_id="000000000000",
    )
    await fn.start()
    return fn


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hub.invoke"]


async def test_successes_past_the_rate_are_summed_up_once_a_second(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hub.invoke")
    fn = await function("functions.recorder.noop")
    for _ in range(LOG_EACH_PER_SECOND + 30):
        assert (await fn.invoke({}, mapping="m", records=10)).ok
    assert [r.getMessage() for r in lines(caplog)] == ["invoked"] * LOG_EACH_PER_SECOND
    clock.now += 1.0
    assert (await fn.invoke({}, mapping="m", records=10)).ok  # a new second: the summary, then this one
    summary, shown = lines(caplog)[LOG_EACH_PER_SECOND:]
    assert summary.getMessage() == "invoked 30 more times, all succeeded"
    assert summary.fields["invocations"] == 30 and summary.fields["records"] == 300  # type: ignore[attr-defined]
    assert summary.fields["mapping"] == "m"  # type: ignore[attr-defined]
    assert shown.getMessage() == "invoked"
    for _ in range(LOG_EACH_PER_SECOND + 5):
        await fn.invoke({}, mapping="m", records=1)
    await fn.close()  # what was not shown yet is summed up at the end
    assert lines(caplog)[-1].getMessage() == "invoked 6 more times, all succeeded"


async def test_every_failure_is_logged_on_its_own_line(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hub.invoke")
    fn = await function("functions.recorder.fail")
    for _ in range(LOG_EACH_PER_SECOND + 10):
        assert not (await fn.invoke({}, mapping="m")).ok
    await fn.close()
    failures = lines(caplog)
    assert len(failures) == LOG_EACH_PER_SECOND + 10
    assert all(r.levelno == logging.WARNING and r.getMessage().startswith("failed: ") for r in failures)
