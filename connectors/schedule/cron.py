"""``cron()`` expressions: the Quartz dialect EventBridge uses, matched against the wall clock of the schedule's
time zone, and the parser of its six fields (semantics in `connectors.schedule.expressions`)."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from connectors.schedule.base import (
    _NUMBER,
    _ONE_MINUTE,
    _ONE_US,
    Schedule,
    ScheduleError,
    _as_utc,
    _local_to_utc,
    _require_aware,
)
from connectors.schedule.days import (
    DayOfMonthValues,
    DayOfWeekValues,
    DaySpec,
    LastDayOfMonth,
    LastWeekdayOfKind,
    LastWeekdayOfMonth,
    NearestWeekday,
    NthWeekdayOfMonth,
)

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
        """The first fire strictly after `after` (aware datetimes), within `start` and `end`, in `tz` with its DST
        rules; None when there is none."""
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
# Parsing
# --------------------------------------------------------------------------------------------------


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
