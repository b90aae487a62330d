"""The hub's wall clock: what event times, record ages and schedules are measured with (a test may step it)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """The hub's wall clock (a test may step it): event times, record ages, schedules."""

    def time(self) -> float:
        """Wall-clock epoch seconds."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once time() >= when."""
        ...


class SystemClock:
    """The real clock: `time.time()`, and sleeps that notice a step of the wall clock within a minute."""

    def time(self) -> float:
        """Wall-clock epoch seconds."""
        return time.time()

    async def sleep_until(self, when: float) -> None:
        """Return once time() >= when."""
        # asyncio's timer runs on the monotonic clock; re-check the wall clock so a step of it is noticed.
        while (delay := when - time.time()) > 0:
            await asyncio.sleep(min(delay, 60.0))
