"""Waiting between attempts: exponential backoff with jitter, and waits that a stop cuts short."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


_MOST_DOUBLINGS = 64
"""Doublings past which a wait is the cap anyway: an attempt count a broker reports (a redelivered message's
thousandth delivery, a header that says 10**30) never makes a float overflow or a number too large to compute."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits a random time in [d/2, d], d = base * 2^(n-1) <= cap."""

    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt` + 1 (1-based: the wait after the first failure is ~`base`)."""
        ceiling = min(self.cap, self.base * (2 ** min(max(0, attempt - 1), _MOST_DOUBLINGS)))
        return random.uniform(ceiling / 2, ceiling)


async def sleep_unless(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`; False (at once) when `stopping` is set first: a stop never waits for a backoff."""
    if stopping.is_set():
        return False
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return True
    return False


async def await_unless(stopping: asyncio.Event, awaitable: Awaitable[T]) -> T | None:
    """Await `awaitable` unless `stopping` is set first: then cancel it and return None."""
    task = asyncio.ensure_future(awaitable)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    return task.result() if task.done() and not task.cancelled() else None


def cancelling() -> bool:
    """Whether the running task has been cancelled, though the cancellation may not have reached it: a client library
    that catches it while it closes a broken connection can raise an error of its own instead, or retry and go on
    (redis-py evidently does). A loop that retries reads checks this, so that a stopping lane stops."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
