"""A lane runner stops when it is cancelled, even when the source's client library turns the cancellation into an
error of its own (redis-py does, when it lands while a broken connection is being closed): that error is the
cancellation, not a read failure to retry, or the mapping could never stop."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.lanes import run_plain_lane


class _Lane:
    key = "lane-0"
    ordered = True


class _Batcher:
    def __init__(self) -> None:
        self.reads = 0

    async def next(self) -> list[Any]:
        self.reads += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ConnectionError("Connection closed by server.") from None  # what the library raised instead
        return []


class _Work:
    max_in_flight = 1

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.batches = _Batcher()
        self.failures: list[Exception] = []

    def batcher(self, lane: Any) -> _Batcher:
        return self.batches

    async def read_failed(self, lane: Any, exc: Exception, failures: int) -> None:
        self.failures.append(exc)

    def read_recovered(self, lane: Any, failures: int) -> int:
        return 0


async def test_a_read_error_raised_by_the_cancellation_stops_the_lane() -> None:
    work = _Work()
    runner = asyncio.ensure_future(run_plain_lane(work, _Lane()))  # type: ignore[arg-type]
    while work.batches.reads == 0:
        await asyncio.sleep(0)
    runner.cancel()
    done, _ = await asyncio.wait({runner}, timeout=5)
    if not done:  # it went on reading: let it end, then fail
        work.stopping.set()
        runner.cancel()
        await asyncio.wait({runner}, timeout=5)
    assert done, "the lane kept reading after it was cancelled"
    assert runner.cancelled() and work.failures == [] and work.batches.reads == 1


async def test_a_read_error_otherwise_is_retried() -> None:
    work = _Work()

    async def fails_once() -> list[Any]:
        work.batches.reads += 1
        if work.batches.reads == 1:
            raise ConnectionError("refused")
        work.stopping.set()
        raise ConnectionError("refused again")

    work.batches.next = fails_once  # type: ignore[method-assign]
    await asyncio.wait_for(run_plain_lane(work, _Lane()), 5)  # type: ignore[arg-type]
    assert [str(e) for e in work.failures] == ["refused", "refused again"]
