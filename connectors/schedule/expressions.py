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

This module is the public entry point. The cron dialect is in `cron` (its day fields in `days`); the
`Schedule` interface, `ScheduleError` and the time helpers every kind shares are in `base`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger

from connectors.schedule.base import (
    _EPOCH,
    _MAX_US,
    _NUMBER,
    _ONE_US,
    Schedule,
    ScheduleError,
    _as_utc,
    _end_of_gap,
    _local_to_utc,
    _require_aware,
    _to_us,
)
from connectors.schedule.cron import CronSchedule, _parse_cron

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

_AT_BODY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})")


# --------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------


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
        """The first fire strictly after `after`: `anchor` (or `start`) plus a whole number of intervals; None past
        `end`."""
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
        """Its one fire time if it is after `after`, else None (AWS ignores start and end dates for one-time
        schedules)."""
        # start/end deliberately ignored: AWS ignores StartDate/EndDate for one-time schedules.
        _require_aware(after=after, anchor=anchor, start=start, end=end)
        try:
            fire = self.fire_time(tz)
        except OverflowError:  # at(0001-01-01T00:00:00) east of UTC, at(9999-12-31T23:59:59) west of it
            return None
        return fire if fire > after else None


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
        """APScheduler's question: the fire after the previous one (at first: at or after `now`)."""
        # First call (no previous fire): a fire due exactly `now` still counts, as with APScheduler's
        # own CronTrigger. Afterwards: strictly after the previous fire.
        after = previous_fire_time if previous_fire_time is not None else now - _ONE_US
        return self.schedule.next_fire(after, tz=self.tz, anchor=self.anchor, start=self.start, end=self.end)

    def __str__(self) -> str:
        return f"aws[{self.schedule.expression}, tz={self.tz.key}]"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({self.schedule.expression!r}, tz={self.tz.key!r})>"
