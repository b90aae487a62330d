"""Day-of-month and day-of-week specifications of a ``cron()`` expression: which days of a given month a field
selects. Weekdays use AWS/Quartz numbering: 1 = Sunday ... 7 = Saturday."""

from __future__ import annotations

import calendar
from abc import ABC, abstractmethod
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------------
# Day-of-month / day-of-week specifications
# --------------------------------------------------------------------------------------------------


class DaySpec(ABC):
    """Which days of a given month a day-of-month or day-of-week field selects."""

    @abstractmethod
    def days(self, year: int, month: int) -> list[int]:
        """Sorted matching days (1-based) of `month` in `year`."""


def _month_length(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _aws_weekday(year: int, month: int, day: int) -> int:
    """Day of week in AWS/Quartz numbering: 1 = Sunday ... 7 = Saturday."""
    return (calendar.weekday(year, month, day) + 1) % 7 + 1


@dataclass(frozen=True)
class DayOfMonthValues(DaySpec):
    """Explicit days (from values, ranges, steps, ``*``); days past the month's end never match."""

    values: tuple[int, ...]

    def days(self, year: int, month: int) -> list[int]:
        """The values that exist in this month."""
        last = _month_length(year, month)
        return [d for d in self.values if d <= last]


@dataclass(frozen=True)
class LastDayOfMonth(DaySpec):
    """``L`` (offset 0) or ``L-n``: the last day of the month minus `offset` days."""

    offset: int

    def days(self, year: int, month: int) -> list[int]:
        """The last day minus `offset`, if the month has it."""
        day = _month_length(year, month) - self.offset
        return [day] if day >= 1 else []


@dataclass(frozen=True)
class LastWeekdayOfMonth(DaySpec):
    """``LW``: the last Monday-Friday of the month."""

    def days(self, year: int, month: int) -> list[int]:
        """The last Monday-Friday of the month."""
        last = _month_length(year, month)
        weekday = calendar.weekday(year, month, last)  # Monday = 0 ... Sunday = 6
        return [last - max(0, weekday - 4)]


@dataclass(frozen=True)
class NearestWeekday(DaySpec):
    """``nW``: the weekday nearest to day `day`, never crossing into another month.

    Saturday moves back to Friday (forward to Monday the 3rd when it is the 1st); Sunday moves forward to
    Monday (back to Friday when it is the month's last day). When the month has no day `day` (``31W`` in
    April), the month has no fire, as in Quartz.
    """

    day: int

    def days(self, year: int, month: int) -> list[int]:
        """The Monday-Friday nearest `day`, within the month (the 1st, a Saturday, gives the 3rd)."""
        last = _month_length(year, month)
        if self.day > last:
            return []
        weekday = calendar.weekday(year, month, self.day)
        if weekday == calendar.SATURDAY:
            return [3] if self.day == 1 else [self.day - 1]
        if weekday == calendar.SUNDAY:
            return [self.day - 2] if self.day == last else [self.day + 1]
        return [self.day]


@dataclass(frozen=True)
class DayOfWeekValues(DaySpec):
    """Explicit weekdays (AWS numbering, 1 = Sunday)."""

    weekdays: tuple[int, ...]

    def days(self, year: int, month: int) -> list[int]:
        """Every day of the month on one of the weekdays."""
        first = _aws_weekday(year, month, 1)
        wanted = set(self.weekdays)
        return [d for d in range(1, _month_length(year, month) + 1) if (first + d - 2) % 7 + 1 in wanted]


@dataclass(frozen=True)
class LastWeekdayOfKind(DaySpec):
    """``dL``: the last given weekday of the month (``6L`` = last Friday)."""

    weekday: int

    def days(self, year: int, month: int) -> list[int]:
        """The month's last day on `weekday`."""
        last = _month_length(year, month)
        return [last - (_aws_weekday(year, month, last) - self.weekday) % 7]


@dataclass(frozen=True)
class NthWeekdayOfMonth(DaySpec):
    """``d#n``: the n-th given weekday of the month (``6#3`` = third Friday); none if it does not exist."""

    weekday: int
    nth: int

    def days(self, year: int, month: int) -> list[int]:
        """The `nth` day on `weekday` of the month, if it has one."""
        first = 1 + (self.weekday - _aws_weekday(year, month, 1)) % 7
        day = first + 7 * (self.nth - 1)
        return [day] if day <= _month_length(year, month) else []
