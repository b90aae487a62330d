"""EventBridge schedule expressions (``rate()``, ``cron()``, ``at()``) evaluated against an injected clock.

Everything here is pure: no I/O, no real clock, no sleeping. Callers pass the instant to search from
(``after``), the time zone the expression is evaluated in (``tz``, EventBridge Scheduler's
``ScheduleExpressionTimezone``), the rate anchor (the schedule's creation time) and the optional
``StartDate``/``EndDate`` bounds. All returned instants are aware UTC datetimes.

Semantics, following the AWS documentation (EventBridge rules and EventBridge Scheduler) and Quartz,
whose cron dialect EventBridge uses:

* ``rate(value unit)`` fires at ``base + k * interval`` (k >= 0), where ``base`` is ``start`` when given
  and ``anchor`` otherwise. It counts elapsed time, so DST changes do not move it.
* ``cron(...)`` fields are matched against the wall clock in ``tz``. A local time that does not exist
  (spring-forward gap) is skipped; a local time that occurs twice (fall-back) fires once, at its first
  occurrence.
* ``at(yyyy-mm-ddThh:mm:ss)`` fires once at that local time in ``tz``; ``start``/``end`` are ignored,
  as AWS ignores them for one-time schedules.
"""

from __future__ import annotations

import calendar
import re
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger

__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "AtSchedule",
    "AwsScheduleTrigger",
    "CronSchedule",
    "RateSchedule",
    "Schedule",
    "ScheduleError",
    "fires_between",
    "parse_schedule",
]

#: EventBridge Scheduler's limit on ``ScheduleExpression``.
MAX_EXPRESSION_LENGTH = 256

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ONE_MINUTE = timedelta(minutes=1)
_MAX_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _ONE_US

_MIN_YEAR = 1970
_MAX_YEAR = 2199

_MONTH_NAMES: Mapping[str, int] = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1
    )
}
# AWS/Quartz numbering: 1 = Sunday ... 7 = Saturday.
_DAY_NAMES: Mapping[str, int] = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)
}

_RATE_UNITS: Mapping[str, tuple[str, str, int]] = {
    # spelling -> (singular, plural, seconds per unit)
    "second": ("second", "seconds", 1),
    "seconds": ("second", "seconds", 1),
    "minute": ("minute", "minutes", 60),
    "minutes": ("minute", "minutes", 60),
    "hour": ("hour", "hours", 3600),
    "hours": ("hour", "hours", 3600),
    "day": ("day", "days", 86400),
    "days": ("day", "days", 86400),
}

_NUMBER = re.compile(r"[0-9]+")
_AT_BODY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})")


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


@dataclass(frozen=True)
class RateSchedule(Schedule):
    """``rate(value unit)``: every `value` `unit`s of elapsed time from the anchor (or `start`)."""

    expression: str
    value: int
    unit: str  # canonical plural: "seconds", "minutes", "hours" or "days"
    interval: timedelta

    def next_fire(
        self,
        after: datetime,
        *,
        tz: ZoneInfo,
        anchor: datetime,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> datetime | None:
        _require_aware(after=after, anchor=anchor, start=start, end=end)
        after, start, end = after.astimezone(UTC), _as_utc(start), _as_utc(end)
        base_us = _to_us(start if start is not None else anchor)
        after_us = _to_us(after)
        step_us = self.interval // _ONE_US
        k = 0 if after_us < base_us else (after_us - base_us) // step_us + 1
        fire_us = base_us + k * step_us
        if fire_us > _MAX_US:
            return None
        fire = _EPOCH + timedelta(microseconds=fire_us)
        if end is not None and fire > end:
            return None
        return fire


@dataclass(frozen=True)
class AtSchedule(Schedule):
    """``at(yyyy-mm-ddThh:mm:ss)``: one fire at that wall-clock time in the schedule's time zone."""

    expression: str
    local_time: datetime  # naive wall-clock time

    def fire_time(self, tz: ZoneInfo) -> datetime:
        """The single fire instant (aware UTC) of this schedule in `tz`."""
        instant = _local_to_utc(self.local_time, tz)
        if instant is None:
            # The wall-clock time falls in a DST gap (it never happens on that day). We fire at the
            # first valid instant after the gap, i.e. the moment the clocks jump forward: at(02:30)
            # on a 02:00 -> 03:00 spring-forward day fires at 03:00 local time.
            instant = _end_of_gap(self.local_time, tz)
        return instant

    def next_fire(
        self,
        after: datetime,
        *,
        tz: ZoneInfo,
        anchor: datetime,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> datetime | None:
        # start/end deliberately ignored: AWS ignores StartDate/EndDate for one-time schedules.
        _require_aware(after=after, anchor=anchor, start=start, end=end)
        try:
            fire = self.fire_time(tz)
        except OverflowError:  # at(0001-01-01T00:00:00) east of UTC, at(9999-12-31T23:59:59) west of it
            return None
        return fire if fire > after else None


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """``cron(Minutes Hours Day-of-month Month Day-of-week Year)`` evaluated on the wall clock of `tz`.

    Exactly one of `day_of_month` and `day_of_week` is None (the field that was ``?``).
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    day_of_month: DaySpec | None
    months: tuple[int, ...]
    day_of_week: DaySpec | None
    years: tuple[int, ...]

    def next_fire(
        self,
        after: datetime,
        *,
        tz: ZoneInfo,
        anchor: datetime,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> datetime | None:
        _require_aware(after=after, anchor=anchor, start=start, end=end)
        after, start, end = after.astimezone(UTC), _as_utc(start), _as_utc(end)
        lower = after
        if start is not None and start > lower:
            lower = start - _ONE_US  # "strictly after start - 1us" == "at or after start"
        if (end is not None and end <= lower) or lower.year > _MAX_YEAR:
            return None
        local = lower.astimezone(tz).replace(tzinfo=None, fold=0)
        cursor = local.replace(second=0, microsecond=0)
        while True:
            candidate = self.next_local_match(cursor)
            if candidate is None:
                return None
            instant = _local_to_utc(candidate, tz)
            # instant is None: the wall-clock time does not exist today (spring-forward gap): skip it.
            # instant <= lower: either the minute of `after` itself, or a fall-back repeat whose first
            # occurrence is already behind us (it runs only once, at fold=0).
            if instant is not None and instant > lower:
                if end is not None and instant > end:
                    return None
                return instant
            cursor = candidate + _ONE_MINUTE

    def next_local_match(self, cursor: datetime) -> datetime | None:
        """The first naive wall-clock minute >= `cursor` (naive, minute-aligned) that matches all fields.

        Searches field by field (year, month, day, hour, minute), so the cost is bounded by the number
        of candidate years and months, never by the number of minutes skipped.
        """
        years = self.years
        for year in years[bisect_left(years, cursor.year) :]:
            same_year = year == cursor.year
            for month in self.months[bisect_left(self.months, cursor.month) if same_year else 0 :]:
                same_month = same_year and month == cursor.month
                days = self.days_in(year, month)
                for day in days[bisect_left(days, cursor.day) if same_month else 0 :]:
                    same_day = same_month and day == cursor.day
                    for hour in self.hours[bisect_left(self.hours, cursor.hour) if same_day else 0 :]:
                        same_hour = same_day and hour == cursor.hour
                        index = bisect_left(self.minutes, cursor.minute) if same_hour else 0
                        if index < len(self.minutes):
                            return datetime(year, month, day, hour, self.minutes[index])
        return None

    def days_in(self, year: int, month: int) -> list[int]:
        """Sorted days of `month` in `year` that match the day-of-month or day-of-week field."""
        spec = self.day_of_month if self.day_of_month is not None else self.day_of_week
        assert spec is not None  # guaranteed by the parser: exactly one of the two is '?'
        return spec.days(year, month)


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
        last = _month_length(year, month)
        return [d for d in self.values if d <= last]


@dataclass(frozen=True)
class LastDayOfMonth(DaySpec):
    """``L`` (offset 0) or ``L-n``: the last day of the month minus `offset` days."""

    offset: int

    def days(self, year: int, month: int) -> list[int]:
        day = _month_length(year, month) - self.offset
        return [day] if day >= 1 else []


@dataclass(frozen=True)
class LastWeekdayOfMonth(DaySpec):
    """``LW``: the last Monday-Friday of the month."""

    def days(self, year: int, month: int) -> list[int]:
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
        first = _aws_weekday(year, month, 1)
        wanted = set(self.weekdays)
        return [d for d in range(1, _month_length(year, month) + 1) if (first + d - 2) % 7 + 1 in wanted]


@dataclass(frozen=True)
class LastWeekdayOfKind(DaySpec):
    """``dL``: the last given weekday of the month (``6L`` = last Friday)."""

    weekday: int

    def days(self, year: int, month: int) -> list[int]:
        last = _month_length(year, month)
        return [last - (_aws_weekday(year, month, last) - self.weekday) % 7]


@dataclass(frozen=True)
class NthWeekdayOfMonth(DaySpec):
    """``d#n``: the n-th given weekday of the month (``6#3`` = third Friday); none if it does not exist."""

    weekday: int
    nth: int

    def days(self, year: int, month: int) -> list[int]:
        first = 1 + (self.weekday - _aws_weekday(year, month, 1)) % 7
        day = first + 7 * (self.nth - 1)
        return [day] if day <= _month_length(year, month) else []


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------


def parse_schedule(expression: str, *, allow_seconds: bool = True) -> Schedule:
    """Parse an EventBridge ``rate()``, ``cron()`` or ``at()`` expression.

    `allow_seconds` enables the non-AWS extension ``rate(n second|seconds)``.
    Raises `ScheduleError` for anything AWS would reject (and for a few things it accepts but whose
    Quartz behaviour is unspecified, see the cron parser).
    """
    if not isinstance(expression, str):
        raise ScheduleError(repr(expression), "a schedule expression must be a string", field="expression")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ScheduleError(
            expression,
            f"expression is {len(expression)} characters long; the maximum is {MAX_EXPRESSION_LENGTH}",
            field="expression",
        )
    for keyword, parser in (("rate", _parse_rate), ("cron", _parse_cron), ("at", _parse_at)):
        if expression.startswith(keyword + "("):
            if not expression.endswith(")"):
                raise ScheduleError(expression, f"missing closing ')' after {keyword}(", field="expression")
            return parser(expression, expression[len(keyword) + 1 : -1], allow_seconds=allow_seconds)
    raise ScheduleError(
        expression,
        "expected rate(value unit), cron(minutes hours day-of-month month day-of-week year) or at(yyyy-mm-ddThh:mm:ss)",
        field="expression",
    )


def _parse_rate(expression: str, body: str, *, allow_seconds: bool) -> Schedule:
    parts = body.split()
    if len(parts) != 2:
        raise ScheduleError(expression, "rate() takes exactly two parts: 'value unit'", field="expression")
    value_text, unit_text = parts
    if not _NUMBER.fullmatch(value_text):
        raise ScheduleError(expression, f"value '{value_text}' must be a positive integer", field="value")
    value = int(value_text)
    if value == 0:
        raise ScheduleError(expression, "value must be a positive integer, not 0", field="value")
    units = _RATE_UNITS.get(unit_text)
    allowed = "second(s), minute(s), hour(s) or day(s)" if allow_seconds else "minute(s), hour(s) or day(s)"
    if units is None:
        raise ScheduleError(expression, f"unit '{unit_text}' is not one of {allowed}", field="unit")
    singular, plural, seconds = units
    if singular == "second" and not allow_seconds:
        raise ScheduleError(expression, f"unit '{unit_text}' is not supported by AWS; use {allowed}", field="unit")
    if value == 1 and unit_text != singular:
        raise ScheduleError(
            expression,
            f"unit '{unit_text}' must be singular ('{singular}') when the value is 1",
            field="unit",
        )
    if value != 1 and unit_text != plural:
        raise ScheduleError(
            expression,
            f"unit '{unit_text}' must be plural ('{plural}') when the value is {value}",
            field="unit",
        )
    if value * seconds > _MAX_US // 1_000_000:
        raise ScheduleError(expression, f"value {value} is too large", field="value")
    return RateSchedule(expression, value, plural, timedelta(seconds=value * seconds))


def _parse_at(expression: str, body: str, *, allow_seconds: bool) -> Schedule:
    match = _AT_BODY.fullmatch(body)
    if match is None:
        raise ScheduleError(expression, f"date-time '{body}' must have the form yyyy-mm-ddThh:mm:ss", field="date-time")
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        local_time = datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ScheduleError(expression, f"date-time '{body}' is not valid: {exc}", field="date-time") from None
    return AtSchedule(expression, local_time)


class _FieldParser:
    """Parses one cron field, raising ScheduleError that names the expression, the field and the text."""

    def __init__(
        self,
        expression: str,
        field: str,
        text: str,
        low: int,
        high: int,
        names: Mapping[str, int] | None = None,
    ) -> None:
        self.expression = expression
        self.field = field
        self.text = text
        self.low = low
        self.high = high
        self.names = names

    def error(self, problem: str) -> ScheduleError:
        return ScheduleError(self.expression, f"{self.field} field '{self.text}': {problem}", field=self.field)

    def value(self, token: str) -> int:
        if _NUMBER.fullmatch(token):
            number = int(token)
        elif self.names is not None and token.upper() in self.names:
            number = self.names[token.upper()]  # names are case-insensitive
        else:
            if token == "":
                raise self.error("missing value")
            if token == "?":
                raise self.error("'?' is only allowed as the whole day-of-month or day-of-week field")
            allowed = f"{self.low}-{self.high}"
            if self.names is not None:
                names = list(self.names)
                allowed += f" or {names[0]}-{names[-1]}"
            raise self.error(f"'{token}' is not a valid value (expected {allowed})")
        if not self.low <= number <= self.high:
            raise self.error(f"value {number} is out of range {self.low}-{self.high}")
        return number

    def values(self, *, allow_step: bool = True, wrap: bool = True) -> tuple[int, ...]:
        """``, - * /`` lists. Ranges whose start is after their end wrap around (``22-2``, ``FRI-MON``,
        ``NOV-FEB``) as in Quartz, except where `wrap` is False (the year)."""
        size = self.high - self.low + 1
        selected: set[int] = set()
        for item in self.text.split(","):
            if item == "":
                raise self.error("empty entry in a ',' list")
            base, slash, step_text = item.partition("/")
            step = 1
            if slash:
                if not allow_step:
                    raise self.error(f"'/' is not allowed in the {self.field} field")
                if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
                    raise self.error(f"increment '{step_text}' after '/' must be a positive integer")
                step = int(step_text)
            if base == "*":
                first, last = self.low, self.high
            elif "-" in base:
                start_text, _, end_text = base.partition("-")
                first, last = self.value(start_text), self.value(end_text)
                if first > last and not wrap:
                    raise self.error(f"range {base} runs backwards; the start must not be after the end")
            else:
                first = self.value(base)
                last = self.high if slash else first
            if last < first:
                last += size  # wrap-around range, e.g. 22-2 = 22,23,0,1,2
            selected.update((i - self.low) % size + self.low for i in range(first, last + 1, step))
        return tuple(sorted(selected))


def _parse_cron(expression: str, body: str, *, allow_seconds: bool) -> Schedule:
    fields = body.split()
    if len(fields) != 6:
        raise ScheduleError(
            expression,
            f"expected 6 fields (minutes hours day-of-month month day-of-week year), got {len(fields)}",
            field="expression",
        )
    minute_text, hour_text, dom_text, month_text, dow_text, year_text = fields
    if dom_text == "?" and dow_text == "?":
        raise ScheduleError(
            expression,
            "day-of-month and day-of-week cannot both be '?'; exactly one of them must be '?'",
            field="day-of-month",
        )
    if dom_text == "*" and dow_text == "*":
        raise ScheduleError(
            expression,
            "day-of-month and day-of-week cannot both be '*'; one of them must be '?'",
            field="day-of-month",
        )
    if dom_text != "?" and dow_text != "?":
        raise ScheduleError(
            expression,
            f"day-of-month '{fields[2]}' and day-of-week '{fields[4]}' cannot both be set; one of them must be '?'",
            field="day-of-month",
        )
    minutes = _FieldParser(expression, "minutes", minute_text, 0, 59).values()
    hours = _FieldParser(expression, "hours", hour_text, 0, 23).values()
    day_of_month = _parse_day_of_month(_FieldParser(expression, "day-of-month", dom_text, 1, 31))
    months = _FieldParser(expression, "month", month_text, 1, 12, _MONTH_NAMES).values()
    day_of_week = _parse_day_of_week(_FieldParser(expression, "day-of-week", dow_text, 1, 7, _DAY_NAMES))
    years = _FieldParser(expression, "year", year_text, _MIN_YEAR, _MAX_YEAR).values(wrap=False)
    return CronSchedule(expression, minutes, hours, day_of_month, months, day_of_week, years)


def _parse_day_of_month(parser: _FieldParser) -> DaySpec | None:
    text = parser.text.upper()
    if text == "?":
        return None
    if "L" not in text and "W" not in text:
        return DayOfMonthValues(parser.values())
    # Quartz gives L and W no defined meaning inside lists or ranges ("confusing/unexpected results"),
    # so, like Quartz's own parser for L, we require them to be the whole field.
    if "," in text:
        raise parser.error("'L' and 'W' cannot be combined with other values in a ',' list")
    if text == "L":
        return LastDayOfMonth(0)
    if text == "LW":
        return LastWeekdayOfMonth()
    offset = re.fullmatch(r"L-([0-9]+)", text)
    if offset is not None:
        days_before = int(offset.group(1))
        if not 1 <= days_before <= 30:
            raise parser.error(f"offset {days_before} in 'L-n' is out of range 1-30")
        return LastDayOfMonth(days_before)
    nearest = re.fullmatch(r"([0-9]+)W", parser.text, re.IGNORECASE)
    if nearest is not None:
        return NearestWeekday(parser.value(nearest.group(1)))
    raise parser.error("'L' must be used as 'L', 'L-n' or 'LW', and 'W' after a single day ('15W') or as 'LW'")


def _parse_day_of_week(parser: _FieldParser) -> DaySpec | None:
    text = parser.text.upper()
    if text == "?":
        return None
    if "/" in text:
        raise parser.error("'/' is not allowed in the day-of-week field (allowed: , - * ? L #)")
    if "#" in text:
        if "," in text:
            raise parser.error("'#' allows only one expression in the day-of-week field")
        nth = re.fullmatch(r"([0-9A-Z]+)#([0-9]+)", parser.text, re.IGNORECASE)
        if nth is None:
            raise parser.error("'#' must be written 'd#n', e.g. '6#3' for the third Friday")
        weekday = parser.value(nth.group(1))
        occurrence = int(nth.group(2))
        if not 1 <= occurrence <= 5:
            raise parser.error(f"occurrence {occurrence} after '#' is out of range 1-5")
        return NthWeekdayOfMonth(weekday, occurrence)
    if "L" in text:  # no day name contains an L
        if "," in text:
            raise parser.error("'L' cannot be combined with other values in a ',' list")
        if text == "L":
            return DayOfWeekValues((7,))  # alone, L is the last day of the week: Saturday
        last = re.fullmatch(r"([0-9A-Z]+)L", parser.text, re.IGNORECASE)
        if last is None:
            raise parser.error("'L' must be used alone (Saturday) or after one weekday ('5L' = last Thursday)")
        return LastWeekdayOfKind(parser.value(last.group(1)))
    return DayOfWeekValues(parser.values())


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


# --------------------------------------------------------------------------------------------------
# Catching up and APScheduler integration
# --------------------------------------------------------------------------------------------------


def fires_between(
    schedule: Schedule,
    after: datetime,
    until: datetime,
    *,
    tz: ZoneInfo,
    anchor: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 10_000,
) -> list[datetime]:
    """All fire times in (after, until], oldest first, for catching up misfires after downtime.

    At most `limit` times are returned (the earliest ones); callers can detect truncation with
    ``len(result) == limit``.
    """
    _require_aware(until=until)
    fires: list[datetime] = []
    cursor = after
    while len(fires) < limit:
        fire = schedule.next_fire(cursor, tz=tz, anchor=anchor, start=start, end=end)
        if fire is None or fire > until:
            break
        fires.append(fire)
        cursor = fire
    return fires


class AwsScheduleTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """APScheduler 3.x trigger driven by a `Schedule`, so EventBridge expressions can run in APScheduler."""

    def __init__(
        self,
        schedule: Schedule | str,
        *,
        tz: ZoneInfo,
        anchor: datetime,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        _require_aware(anchor=anchor, start=start, end=end)
        self.schedule = parse_schedule(schedule) if isinstance(schedule, str) else schedule
        self.tz = tz
        self.anchor = anchor
        self.start = start
        self.end = end

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        # First call (no previous fire): a fire due exactly `now` still counts, as with APScheduler's
        # own CronTrigger. Afterwards: strictly after the previous fire.
        after = previous_fire_time if previous_fire_time is not None else now - _ONE_US
        return self.schedule.next_fire(after, tz=self.tz, anchor=self.anchor, start=self.start, end=self.end)

    def __str__(self) -> str:
        return f"aws[{self.schedule.expression}, tz={self.tz.key}]"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({self.schedule.expression!r}, tz={self.tz.key!r})>"
