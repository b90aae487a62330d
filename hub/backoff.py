"""Waiting between attempts: exponential backoff with jitter, and a sleep that a stop cuts short."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits a random time in [d/2, d], d = base * 2^(n-1) <= cap."""

    base: float
    cap: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt` + 1 (1-based: the wait after the first failure is ~`base`)."""
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
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
