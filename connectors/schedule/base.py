"""The `Schedule` interface every kind of expression implements, `ScheduleError`, and the pure time helpers
they share. The semantics are described in `connectors.schedule.expressions`, the public entry point."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ONE_MINUTE = timedelta(minutes=1)
_MAX_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _ONE_US

_NUMBER = re.compile(r"[0-9]+")


class ScheduleError(ValueError):
    """Invalid schedule expression.

    ``str()`` is ``"<expression>: <problem>"``; the problem names the offending field and what is wrong,
    e.g. ``cron(0 12 * * * *): day-of-month and day-of-week cannot both be '*'; one of them must be '?'``.
    """

    def __init__(self, expression: str, problem: str, *, field: str | None = None) -> None:
        self.expression = expression
        self.problem = problem
        self.field = field
        super().__init__(f"{expression}: {problem}")


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------


class Schedule(ABC):
    """A parsed schedule expression. Implementations: `RateSchedule`, `CronSchedule`, `AtSchedule`."""

    expression: str

    @abstractmethod
    def next_fire(
        self,
        after: datetime,
        *,
        tz: ZoneInfo,
        anchor: datetime,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> datetime | None:
        """The first fire time strictly after `after` (aware datetime), as an aware UTC datetime.

        Returns None when the schedule has no more fires (past `end`, or an at() in the past).
        `start` and `end` are inclusive bounds for rate and cron schedules and ignored by at().
        """


# --------------------------------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------------------------------


def _require_aware(**values: datetime | None) -> None:
    for name, value in values.items():
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


def _as_utc(value: datetime | None) -> datetime | None:
    # Normalising to UTC also sidesteps PEP 495's rule that an aware datetime in a repeated (fold=1)
    # interval never compares equal to a datetime in another zone.
    return None if value is None else value.astimezone(UTC)


def _to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_US


def _local_to_utc(local: datetime, tz: ZoneInfo) -> datetime | None:
    """The UTC instant of naive wall-clock `local` in `tz`: its first occurrence when it is ambiguous
    (fall-back), None when it does not exist (spring-forward gap)."""
    instant = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != local:
        return None
    return instant


def _end_of_gap(local: datetime, tz: ZoneInfo) -> datetime:
    """For a wall-clock time inside a DST gap, the instant the gap ends (the first valid instant after it).

    With fold=0 zoneinfo maps a nonexistent time using the offset from before the transition, with
    fold=1 using the offset after it; the transition lies between the two. Binary-search it to the
    microsecond: the first instant whose wall-clock reading is later than `local`.
    """
    low = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if low > high:
        low, high = high, low
    low_us, high_us = _to_us(low), _to_us(high)
    while low_us < high_us:
        middle = (low_us + high_us) // 2
        reading = (_EPOCH + timedelta(microseconds=middle)).astimezone(tz).replace(tzinfo=None)
        if reading > local:
            high_us = middle
        else:
            low_us = middle + 1
    return _EPOCH + timedelta(microseconds=low_us)
