"""Tests for connectors.schedule.expressions: fixed datetimes only, never the real clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.base import BaseTrigger

from connectors.schedule.expressions import (
    MAX_EXPRESSION_LENGTH,
    AtSchedule,
    AwsScheduleTrigger,
    CronSchedule,
    RateSchedule,
    Schedule,
    ScheduleError,
    fires_between,
    parse_schedule,
)

UTC_TZ = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[misc]


def next_fires(
    expression: str,
    after: datetime,
    count: int,
    *,
    tz: ZoneInfo = UTC_TZ,
    anchor: datetime = ANCHOR,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[datetime]:
    """Up to `count` successive fires (UTC) after `after`."""
    schedule = parse_schedule(expression)
    fires: list[datetime] = []
    cursor = after
    while len(fires) < count:
        fire = schedule.next_fire(cursor, tz=tz, anchor=anchor, start=start, end=end)
        if fire is None:
            break
        assert fire.tzinfo is UTC
        assert fire > cursor
        fires.append(fire)
        cursor = fire
    return fires


def wall(fires: list[datetime], tz: ZoneInfo = UTC_TZ) -> list[str]:
    """Fires rendered as local wall-clock strings with offset, for readable assertions."""
    return [f.astimezone(tz).strftime("%Y-%m-%d %H:%M%z") for f in fires]


# --------------------------------------------------------------------------------------------------
# parse_schedule dispatch
# --------------------------------------------------------------------------------------------------


def test_parse_returns_the_three_schedule_kinds() -> None:
    rate = parse_schedule("rate(5 minutes)")
    cron = parse_schedule("cron(0 12 * * ? *)")
    at = parse_schedule("at(2026-07-01T09:00:00)")
    assert isinstance(rate, RateSchedule)
    assert isinstance(cron, CronSchedule)
    assert isinstance(at, AtSchedule)
    for schedule, expression in (
        (rate, "rate(5 minutes)"),
        (cron, "cron(0 12 * * ? *)"),
        (at, "at(2026-07-01T09:00:00)"),
    ):
        assert isinstance(schedule, Schedule)
        assert schedule.expression == expression


def test_schedule_error_is_a_value_error_with_details() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule("cron(75 * * * ? *)")
    error = info.value
    assert isinstance(error, ValueError)
    assert error.expression == "cron(75 * * * ? *)"
    assert error.field == "minutes"
    assert str(error) == "cron(75 * * * ? *): minutes field '75': value 75 is out of range 0-59"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expected rate(value unit), cron("),
        ("every 5 minutes", "expected rate(value unit), cron("),
        ("CRON(0 12 * * ? *)", "expected rate(value unit)"),
        ("Rate(5 minutes)", "expected rate(value unit)"),
        ("cron(0 12 * * ? *", "missing closing ')' after cron("),
        ("rate(5 minutes", "missing closing ')' after rate("),
        ("at(2026-07-01T09:00:00", "missing closing ')' after at("),
    ],
)
def test_unrecognised_expressions(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(expression)
    assert str(info.value).startswith(f"{expression}: ")
    assert message in str(info.value)
    assert info.value.field == "expression"


def test_expression_longer_than_aws_limit_is_rejected() -> None:
    expression = "cron(" + ",".join(["0"] * 130) + " 12 * * ? *)"
    assert len(expression) > MAX_EXPRESSION_LENGTH
    with pytest.raises(ScheduleError, match="maximum is 256"):
        parse_schedule(expression)


def test_non_string_expression_is_rejected() -> None:
    with pytest.raises(ScheduleError, match="must be a string"):
        parse_schedule(5)  # type: ignore[arg-type]


def test_naive_datetimes_are_rejected() -> None:
    schedule = parse_schedule("rate(5 minutes)")
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        schedule.next_fire(datetime(2026, 1, 1), tz=UTC_TZ, anchor=ANCHOR)
    with pytest.raises(ValueError, match="anchor must be a timezone-aware datetime"):
        schedule.next_fire(ANCHOR, tz=UTC_TZ, anchor=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="end must be"):
        parse_schedule("cron(0 12 * * ? *)").next_fire(ANCHOR, tz=UTC_TZ, anchor=ANCHOR, end=datetime(2026, 2, 1))


# --------------------------------------------------------------------------------------------------
# rate()
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
        ("rate(1 second)", timedelta(seconds=1)),
        ("rate(30 seconds)", timedelta(seconds=30)),
    ],
)
def test_rate_units_and_intervals(expression: str, interval: timedelta) -> None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, RateSchedule)
    assert schedule.interval == interval
    anchor = utc(2026, 1, 1, 12, 0, 0)
    # after == anchor: the anchor itself is not "strictly after", so k = 1.
    assert next_fires(expression, anchor, 3, anchor=anchor) == [anchor + k * interval for k in (1, 2, 3)]


def test_rate_fires_at_anchor_when_after_is_before_it() -> None:
    anchor = utc(2026, 1, 1, 12, 0, 0)
    assert next_fires("rate(5 minutes)", utc(2026, 1, 1, 11, 0), 2, anchor=anchor) == [
        anchor,
        utc(2026, 1, 1, 12, 5),
    ]


def test_rate_grid_is_anchored_not_aligned_to_the_clock() -> None:
    anchor = utc(2026, 1, 1, 12, 3, 17)
    fire = parse_schedule("rate(5 minutes)").next_fire(utc(2026, 1, 3, 8, 0), tz=UTC_TZ, anchor=anchor)
    assert fire == utc(2026, 1, 3, 8, 3, 17)
    # exactly on a grid point: strictly after, so the next one
    fire = parse_schedule("rate(5 minutes)").next_fire(utc(2026, 1, 3, 8, 3, 17), tz=UTC_TZ, anchor=anchor)
    assert fire == utc(2026, 1, 3, 8, 8, 17)


def test_rate_after_in_another_time_zone() -> None:
    anchor = utc(2026, 1, 1, 0, 0)
    after = local(KOLKATA, 2026, 1, 1, 5, 40)  # 00:10 UTC
    assert parse_schedule("rate(1 hour)").next_fire(after, tz=UTC_TZ, anchor=anchor) == utc(2026, 1, 1, 1, 0)


def test_rate_start_replaces_the_anchor() -> None:
    anchor = utc(2026, 1, 1, 12, 0)
    start = utc(2026, 1, 1, 12, 2)
    assert next_fires("rate(5 minutes)", utc(2026, 1, 1, 12, 0), 2, anchor=anchor, start=start) == [
        start,
        utc(2026, 1, 1, 12, 7),
    ]


def test_rate_start_in_the_future_waits_for_start() -> None:
    start = utc(2026, 6, 1, 9, 30)
    fire = parse_schedule("rate(1 day)").next_fire(utc(2026, 1, 10), tz=UTC_TZ, anchor=ANCHOR, start=start)
    assert fire == start


def test_rate_end_is_inclusive() -> None:
    anchor = utc(2026, 1, 1, 12, 0)
    end = utc(2026, 1, 1, 12, 10)
    assert next_fires("rate(5 minutes)", anchor, 10, anchor=anchor, end=end) == [
        utc(2026, 1, 1, 12, 5),
        utc(2026, 1, 1, 12, 10),
    ]
    assert parse_schedule("rate(5 minutes)").next_fire(end, tz=UTC_TZ, anchor=anchor, end=end) is None


def test_rate_counts_elapsed_time_across_dst() -> None:
    # 2026-03-08 America/New_York springs forward; a daily rate keeps 24 h spacing in UTC,
    # so its wall-clock time moves from 12:00 EST to 13:00 EDT.
    anchor = local(NEW_YORK, 2026, 3, 6, 12, 0)
    fires = next_fires("rate(1 day)", anchor, 3, tz=NEW_YORK, anchor=anchor)
    assert fires == [utc(2026, 3, 7, 17, 0), utc(2026, 3, 8, 17, 0), utc(2026, 3, 9, 17, 0)]
    assert wall(fires, NEW_YORK) == [
        "2026-03-07 12:00-0500",
        "2026-03-08 13:00-0400",
        "2026-03-09 13:00-0400",
    ]
    # and an hourly rate has no gap or repeat at the transition
    hourly = next_fires("rate(1 hour)", utc(2026, 11, 1, 4, 0), 4, tz=NEW_YORK, anchor=utc(2026, 1, 1))
    assert [b - a for a, b in pairwise(hourly)] == [timedelta(hours=1)] * 3


def test_rate_past_datetime_max_has_no_next_fire() -> None:
    schedule = parse_schedule("rate(100000 days)")
    assert schedule.next_fire(datetime(9999, 1, 1, tzinfo=UTC), tz=UTC_TZ, anchor=ANCHOR) is None


@pytest.mark.parametrize(
    ("expression", "field", "message"),
    [
        ("rate(5 hour)", "unit", "unit 'hour' must be plural ('hours') when the value is 5"),
        ("rate(2 minute)", "unit", "unit 'minute' must be plural ('minutes') when the value is 2"),
        ("rate(10 day)", "unit", "unit 'day' must be plural ('days') when the value is 10"),
        ("rate(1 hours)", "unit", "unit 'hours' must be singular ('hour') when the value is 1"),
        ("rate(1 minutes)", "unit", "unit 'minutes' must be singular ('minute') when the value is 1"),
        ("rate(1 days)", "unit", "unit 'days' must be singular ('day') when the value is 1"),
        ("rate(1 seconds)", "unit", "unit 'seconds' must be singular ('second') when the value is 1"),
        ("rate(5 second)", "unit", "unit 'second' must be plural ('seconds') when the value is 5"),
        ("rate(0 minutes)", "value", "value must be a positive integer, not 0"),
        ("rate(-5 minutes)", "value", "value '-5' must be a positive integer"),
        ("rate(1.5 hours)", "value", "value '1.5' must be a positive integer"),
        ("rate(five minutes)", "value", "value 'five' must be a positive integer"),
        ("rate(2 weeks)", "unit", "unit 'weeks' is not one of second(s), minute(s), hour(s) or day(s)"),
        ("rate(5 Minutes)", "unit", "unit 'Minutes' is not one of"),
        ("rate(5)", "expression", "rate() takes exactly two parts: 'value unit'"),
        ("rate()", "expression", "rate() takes exactly two parts"),
        ("rate(5 minutes extra)", "expression", "rate() takes exactly two parts"),
        ("rate(99999999999999 days)", "value", "value 99999999999999 is too large"),
    ],
)
def test_rate_errors(expression: str, field: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(expression)
    assert str(info.value).startswith(f"{expression}: ")
    assert message in str(info.value)
    assert info.value.field == field


def test_rate_seconds_only_with_the_extension() -> None:
    assert isinstance(parse_schedule("rate(30 seconds)", allow_seconds=True), RateSchedule)
    with pytest.raises(ScheduleError) as info:
        parse_schedule("rate(30 seconds)", allow_seconds=False)
    assert str(info.value) == (
        "rate(30 seconds): unit 'seconds' is not supported by AWS; use minute(s), hour(s) or day(s)"
    )
    with pytest.raises(ScheduleError, match="not one of minute\\(s\\), hour\\(s\\) or day\\(s\\)"):
        parse_schedule("rate(2 weeks)", allow_seconds=False)
    # the AWS units are unaffected
    assert isinstance(parse_schedule("rate(1 minute)", allow_seconds=False), RateSchedule)


# --------------------------------------------------------------------------------------------------
# cron(): minutes, hours, months, years
# --------------------------------------------------------------------------------------------------


def test_cron_single_values() -> None:
    assert wall(next_fires("cron(15 10 * * ? *)", utc(2026, 1, 1), 2)) == [
        "2026-01-01 10:15+0000",
        "2026-01-02 10:15+0000",
    ]


def test_cron_after_is_exclusive_and_seconds_are_ignored() -> None:
    schedule = parse_schedule("cron(15 10 * * ? *)")
    assert schedule.next_fire(utc(2026, 1, 1, 10, 15), tz=UTC_TZ, anchor=ANCHOR) == utc(2026, 1, 2, 10, 15)
    assert schedule.next_fire(utc(2026, 1, 1, 10, 14, 59, 999999), tz=UTC_TZ, anchor=ANCHOR) == utc(2026, 1, 1, 10, 15)
    assert schedule.next_fire(utc(2026, 1, 1, 10, 15, 0, 1), tz=UTC_TZ, anchor=ANCHOR) == utc(2026, 1, 2, 10, 15)


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        ("5,10,45", [5, 10, 45, 5]),
        ("10-12", [10, 11, 12, 10]),
        ("0/15", [0, 15, 30, 45, 0]),
        ("*/20", [0, 20, 40, 0]),
        ("1/10", [1, 11, 21, 31, 41, 51, 1]),
        ("10-40/10", [10, 20, 30, 40, 10]),
        ("55-5", [0, 1, 2, 3, 4, 5, 55, 56, 57, 58, 59, 0]),
        ("50-10/10", [0, 10, 50, 0]),
        ("5,20-22,40/10", [5, 20, 21, 22, 40, 50, 5]),
        ("07", [7, 7]),
        ("15/65", [15, 15]),
    ],
)
def test_cron_minutes_field(minutes: str, expected: list[int]) -> None:
    fires = next_fires(f"cron({minutes} * * * ? *)", utc(2026, 1, 1, 0, 0) - timedelta(minutes=1), len(expected))
    assert [f.minute for f in fires] == expected


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ("0,12", [0, 12, 0]),
        ("9-11", [9, 10, 11, 9]),
        ("*/6", [0, 6, 12, 18, 0]),
        ("1/8", [1, 9, 17, 1]),
        ("8-17/4", [8, 12, 16, 8]),
        ("22-2", [0, 1, 2, 22, 23, 0]),
        ("22-2/2", [0, 2, 22, 0]),
    ],
)
def test_cron_hours_field(hours: str, expected: list[int]) -> None:
    fires = next_fires(f"cron(0 {hours} * * ? *)", utc(2025, 12, 31, 23, 59), len(expected))
    assert [f.hour for f in fires] == expected


@pytest.mark.parametrize(
    ("months", "expected"),
    [
        ("3", [3, 3]),
        ("JAN,JUL", [7, 1, 7]),
        ("jan,Jul", [7, 1, 7]),
        ("APR-JUN", [4, 5, 6, 4]),
        ("4-JUN", [4, 5, 6, 4]),
        ("*/3", [4, 7, 10, 1]),
        ("FEB/5", [7, 12, 2, 7]),  # Feb 1st 2026 is already past
        ("NOV-FEB", [11, 12, 1, 2, 11]),
        ("OCT-MAR/2", [10, 12, 2, 10]),
    ],
)
def test_cron_month_field(months: str, expected: list[int]) -> None:
    fires = next_fires(f"cron(0 0 1 {months} ? *)", utc(2026, 2, 15), len(expected))
    assert [f.month for f in fires] == expected


@pytest.mark.parametrize(
    ("years", "expected"),
    [
        ("2027", [2027]),
        ("2026-2028", [2027, 2028]),  # 2026-01-01 00:00 itself is not strictly after `after`
        ("2026,2030,2199", [2030, 2199]),
        ("2030/50", [2030, 2080, 2130, 2180]),
        ("*/100", [2070, 2170]),
        ("2100-2199/99", [2100, 2199]),
        ("2020", []),
        ("1970-2025", []),
    ],
)
def test_cron_year_field(years: str, expected: list[int]) -> None:
    fires = next_fires(f"cron(0 0 1 JAN ? {years})", utc(2026, 1, 1), 10)
    assert fires == [utc(year, 1, 1) for year in expected]


def test_cron_year_field_includes_current_year_when_still_ahead() -> None:
    assert wall(next_fires("cron(30 6 1 JUL ? 2026-2027)", utc(2026, 1, 1), 5)) == [
        "2026-07-01 06:30+0000",
        "2027-07-01 06:30+0000",
    ]


def test_cron_last_possible_fire_is_in_2199() -> None:
    schedule = parse_schedule("cron(59 23 31 DEC ? *)")
    assert schedule.next_fire(utc(2199, 12, 31, 0, 0), tz=UTC_TZ, anchor=ANCHOR) == utc(2199, 12, 31, 23, 59)
    assert schedule.next_fire(utc(2199, 12, 31, 23, 59), tz=UTC_TZ, anchor=ANCHOR) is None


# --------------------------------------------------------------------------------------------------
# cron(): day-of-month
# --------------------------------------------------------------------------------------------------


def day_list(expression: str, after: datetime, count: int, tz: ZoneInfo = UTC_TZ) -> list[str]:
    return [f.astimezone(tz).strftime("%Y-%m-%d %a") for f in next_fires(expression, after, count, tz=tz)]


@pytest.mark.parametrize(
    ("dom", "expected"),
    [
        ("1,15", ["2026-01-15", "2026-02-01", "2026-02-15"]),
        ("10-12", ["2026-01-11", "2026-01-12", "2026-02-10", "2026-02-11"]),
        ("1/10", ["2026-01-11", "2026-01-21", "2026-01-31", "2026-02-01", "2026-02-11", "2026-02-21"]),
        ("*/15", ["2026-01-16", "2026-01-31", "2026-02-01", "2026-02-16"]),
        ("5-25/10", ["2026-01-15", "2026-01-25", "2026-02-05"]),
        # wrap-around: 29..31 then 1..2; February has no 29-31 in 2026
        ("29-2", ["2026-01-29", "2026-01-30", "2026-01-31", "2026-02-01", "2026-02-02", "2026-03-01"]),
        # days past the end of the month never fire
        ("31", ["2026-01-31", "2026-03-31", "2026-05-31"]),
        ("30,31", ["2026-01-30", "2026-01-31", "2026-03-30", "2026-03-31"]),
    ],
)
def test_cron_day_of_month_values(dom: str, expected: list[str]) -> None:
    days = day_list(f"cron(0 0 {dom} * ? *)", utc(2026, 1, 10, 12), len(expected))
    assert [d[:10] for d in days] == expected


def test_cron_day_of_month_last_day() -> None:
    assert [d[:10] for d in day_list("cron(0 0 L * ? *)", utc(2026, 1, 1), 4)] == [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
        "2026-04-30",
    ]
    # leap year
    assert day_list("cron(0 0 L FEB ? *)", utc(2027, 3, 1), 1) == ["2028-02-29 Tue"]


def test_cron_day_of_month_offset_from_last_day() -> None:
    assert [d[:10] for d in day_list("cron(0 0 L-3 * ? *)", utc(2026, 1, 1), 3)] == [
        "2026-01-28",
        "2026-02-25",
        "2026-03-28",
    ]
    # L-30 exists only in 31-day months
    assert [d[:10] for d in day_list("cron(0 0 L-30 * ? *)", utc(2026, 1, 2), 3)] == [
        "2026-03-01",
        "2026-05-01",
        "2026-07-01",
    ]


def test_cron_last_weekday_of_month() -> None:
    # Jan 2026 ends on Saturday -> Fri 30; Mar ends Tuesday; May ends on Sunday -> Fri 29
    assert day_list("cron(0 0 LW * ? *)", utc(2026, 1, 1), 5) == [
        "2026-01-30 Fri",
        "2026-02-27 Fri",
        "2026-03-31 Tue",
        "2026-04-30 Thu",
        "2026-05-29 Fri",
    ]


def test_cron_nearest_weekday() -> None:
    # 15th: Thu in Jan 2026 (itself), Sun in Feb 2026 (-> Mon 16), Sat in Aug 2026 (-> Fri 14)
    days = day_list("cron(0 0 15W * ? 2026)", utc(2026, 1, 1), 12)
    assert days[0] == "2026-01-15 Thu"
    assert days[1] == "2026-02-16 Mon"
    assert days[7] == "2026-08-14 Fri"
    assert all(not d.endswith(("Sat", "Sun")) for d in days)


def test_cron_1w_does_not_cross_into_the_previous_month() -> None:
    # 2026-08-01 is a Saturday: 1W fires on Monday the 3rd, not Friday July 31st.
    assert day_list("cron(0 9 1W AUG ? *)", utc(2026, 1, 1), 1) == ["2026-08-03 Mon"]
    # 2026-02-01 is a Sunday: Monday the 2nd.
    assert day_list("cron(0 9 1W FEB ? *)", utc(2026, 1, 1), 1) == ["2026-02-02 Mon"]


def test_cron_last_day_w_does_not_cross_into_the_next_month() -> None:
    # 2026-05-31 is a Sunday and the last day: Friday the 29th, not Monday June 1st.
    assert day_list("cron(0 9 31W MAY ? *)", utc(2026, 1, 1), 1) == ["2026-05-29 Fri"]
    # 2026-02-28 is a Saturday and the last day: Friday the 27th.
    assert day_list("cron(0 9 28W FEB ? *)", utc(2026, 1, 1), 1) == ["2026-02-27 Fri"]


def test_cron_31w_skips_short_months() -> None:
    # Quartz (and the EventBridge console preview for 31-day months): no 31st, no fire.
    assert day_list("cron(5 10 31W * ? 2027)", utc(2027, 1, 1), 10) == [
        "2027-01-29 Fri",  # 31st is a Sunday
        "2027-03-31 Wed",
        "2027-05-31 Mon",
        "2027-07-30 Fri",  # 31st is a Saturday
        "2027-08-31 Tue",
        "2027-10-29 Fri",  # 31st is a Sunday
        "2027-12-31 Fri",
    ]
    assert day_list("cron(0 0 30W FEB ? *)", utc(2026, 1, 1), 1) == []


# --------------------------------------------------------------------------------------------------
# cron(): day-of-week
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dow", "expected"),
    [
        ("1", ["Sun", "Sun"]),  # 1 = Sunday (AWS/Quartz numbering)
        ("7", ["Sat", "Sat"]),
        ("SUN", ["Sun", "Sun"]),
        ("mon", ["Mon", "Mon"]),
        ("MON-FRI", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("2-6", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]),
        ("MON,WED,FRI", ["Mon", "Wed", "Fri", "Mon"]),
        ("FRI-MON", ["Mon", "Fri", "Sat", "Sun", "Mon"]),
        ("SAT-SUN", ["Sat", "Sun", "Sat"]),
        ("THU-1", ["Thu", "Fri", "Sat", "Sun", "Thu"]),
        ("sat-Mon", ["Mon", "Sat", "Sun", "Mon"]),
        ("*", ["Mon", "Tue", "Wed"]),
        ("L", ["Sat", "Sat"]),  # alone, L is the last day of the week
    ],
)
def test_cron_day_of_week(dow: str, expected: list[str]) -> None:
    # 2026-01-04 is a Sunday; start just after it
    days = day_list(f"cron(0 0 ? * {dow} *)", utc(2026, 1, 4, 12), len(expected))
    assert [d[-3:] for d in days] == expected


def test_cron_last_weekday_of_kind() -> None:
    # 5L = last Thursday
    assert day_list("cron(0 9 ? * 5L *)", utc(2026, 1, 1), 4) == [
        "2026-01-29 Thu",
        "2026-02-26 Thu",
        "2026-03-26 Thu",
        "2026-04-30 Thu",
    ]
    assert day_list("cron(0 9 ? * FRIL *)", utc(2026, 1, 1), 2) == ["2026-01-30 Fri", "2026-02-27 Fri"]
    assert day_list("cron(0 9 ? * 1L *)", utc(2026, 1, 1), 1) == ["2026-01-25 Sun"]


def test_cron_nth_weekday_of_month() -> None:
    assert day_list("cron(0 9 ? * 6#3 *)", utc(2026, 1, 1), 3) == [
        "2026-01-16 Fri",
        "2026-02-20 Fri",
        "2026-03-20 Fri",
    ]
    assert day_list("cron(0 9 ? * MON#1 *)", utc(2026, 1, 1), 2) == ["2026-01-05 Mon", "2026-02-02 Mon"]
    # a fifth Monday only exists in some months: Mar, Jun, Aug, Nov in 2026
    assert day_list("cron(0 9 ? * 2#5 2026)", utc(2026, 1, 1), 10) == [
        "2026-03-30 Mon",
        "2026-06-29 Mon",
        "2026-08-31 Mon",
        "2026-11-30 Mon",
    ]


def test_cron_day_fields_are_evaluated_in_local_time() -> None:
    # Friday 23:00 in New York is Saturday 04:00 UTC
    fires = next_fires("cron(0 23 ? * FRI *)", utc(2026, 1, 1), 1, tz=NEW_YORK)
    assert fires == [utc(2026, 1, 3, 4, 0)]
    assert wall(fires, NEW_YORK) == ["2026-01-02 23:00-0500"]
    # the last day of the month in Kolkata starts at 18:30 UTC the day before
    assert next_fires("cron(0 0 L * ? *)", utc(2026, 1, 1), 1, tz=KOLKATA) == [utc(2026, 1, 30, 18, 30)]


# --------------------------------------------------------------------------------------------------
# cron(): impossible schedules end quickly
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 0 30 2 ? *)",  # February 30th
        "cron(0 0 31 APR,JUN,SEP,NOV ? *)",
        "cron(0 0 30W FEB ? *)",
        "cron(0 0 ? FEB 1#5 2026)",  # February 2026 has four Sundays
        "cron(0 0 29 FEB ? 2100)",  # 2100 is not a leap year
        "cron(0 0 * * ? 1970-2025)",  # only years in the past
        "cron(0 0 * * ? 2020)",
    ],
)
def test_cron_that_never_fires_returns_none_fast(expression: str) -> None:
    schedule = parse_schedule(expression)
    began = time.perf_counter()
    assert schedule.next_fire(utc(2026, 1, 1), tz=NEW_YORK, anchor=ANCHOR) is None
    assert time.perf_counter() - began < 0.5


def test_cron_far_future_fire_is_found_fast() -> None:
    schedule = parse_schedule("cron(0 0 29 FEB ? *)")
    began = time.perf_counter()
    assert schedule.next_fire(utc(2097, 1, 1), tz=UTC_TZ, anchor=ANCHOR) == utc(2104, 2, 29)
    assert time.perf_counter() - began < 0.5


# --------------------------------------------------------------------------------------------------
# cron(): DST
# --------------------------------------------------------------------------------------------------


def test_new_york_spring_forward_skips_the_missing_time() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist that day.
    fires = next_fires("cron(30 2 * * ? *)", local(NEW_YORK, 2026, 3, 6, 12, 0), 3, tz=NEW_YORK)
    assert wall(fires, NEW_YORK) == [
        "2026-03-07 02:30-0500",
        "2026-03-09 02:30-0400",
        "2026-03-10 02:30-0400",
    ]


def test_new_york_fall_back_runs_the_repeated_time_once() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice; run at the first one.
    fires = next_fires("cron(30 1 * * ? *)", local(NEW_YORK, 2026, 10, 31, 12, 0), 2, tz=NEW_YORK)
    assert fires == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert wall(fires, NEW_YORK) == ["2026-11-01 01:30-0400", "2026-11-02 01:30-0500"]


def test_every_30_minutes_around_new_york_spring_forward() -> None:
    fires = next_fires("cron(0/30 * * * ? *)", local(NEW_YORK, 2026, 3, 8, 0, 45), 6, tz=NEW_YORK)
    assert wall(fires, NEW_YORK) == [
        "2026-03-08 01:00-0500",
        "2026-03-08 01:30-0500",
        "2026-03-08 03:00-0400",  # 02:00 and 02:30 do not exist
        "2026-03-08 03:30-0400",
        "2026-03-08 04:00-0400",
        "2026-03-08 04:30-0400",
    ]
    assert fires[2] - fires[1] == timedelta(minutes=30)


def test_every_30_minutes_around_new_york_fall_back() -> None:
    fires = next_fires("cron(0/30 * * * ? *)", local(NEW_YORK, 2026, 11, 1, 0, 45), 4, tz=NEW_YORK)
    assert wall(fires, NEW_YORK) == [
        "2026-11-01 01:00-0400",
        "2026-11-01 01:30-0400",
        "2026-11-01 02:00-0500",  # the repeated 01:00 and 01:30 EST do not run again
        "2026-11-01 02:30-0500",
    ]
    assert fires[2] - fires[1] == timedelta(minutes=90)


def test_search_starting_inside_the_repeated_hour() -> None:
    # after = 01:10 EST (the second 01:10, fold=1): 01:30 already ran (as EDT), so next is 02:00 EST.
    after = local(NEW_YORK, 2026, 11, 1, 1, 10, fold=1)
    assert after.astimezone(UTC) == utc(2026, 11, 1, 6, 10)
    fire = parse_schedule("cron(0/30 * * * ? *)").next_fire(after, tz=NEW_YORK, anchor=ANCHOR)
    assert fire == utc(2026, 11, 1, 7, 0)
    # and during the first 01:xx the normal schedule applies
    first = local(NEW_YORK, 2026, 11, 1, 1, 10, fold=0)
    assert parse_schedule("cron(0/30 * * * ? *)").next_fire(first, tz=NEW_YORK, anchor=ANCHOR) == utc(
        2026, 11, 1, 5, 30
    )


def test_every_minute_through_the_repeated_hour_has_no_duplicates() -> None:
    fires = fires_between(
        parse_schedule("cron(* * * * ? *)"),
        utc(2026, 11, 1, 4, 0),  # 00:00 EDT
        utc(2026, 11, 1, 8, 0),  # 03:00 EST
        tz=NEW_YORK,
        anchor=ANCHOR,
    )
    readings = [f.astimezone(NEW_YORK).replace(tzinfo=None) for f in fires]
    assert len(readings) == len(set(readings)) == 3 * 60  # 00:01..02:59 wall-clock minutes + 03:00, once each
    assert utc(2026, 11, 1, 6, 30) not in fires  # 01:30 EST (the repeat) does not run
    assert utc(2026, 11, 1, 5, 30) in fires  # 01:30 EDT does


def test_london_transitions() -> None:
    # 2026-03-29: 01:00 GMT -> 02:00 BST; 2026-10-25: 02:00 BST -> 01:00 GMT
    spring = next_fires("cron(30 1 * * ? *)", local(LONDON, 2026, 3, 28, 12), 2, tz=LONDON)
    assert wall(spring, LONDON) == ["2026-03-30 01:30+0100", "2026-03-31 01:30+0100"]
    fall = next_fires("cron(30 1 * * ? *)", local(LONDON, 2026, 10, 24, 12), 2, tz=LONDON)
    assert fall == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    every_30 = next_fires("cron(0/30 * * * ? *)", local(LONDON, 2026, 3, 29, 0, 15), 3, tz=LONDON)
    assert wall(every_30, LONDON) == [
        "2026-03-29 00:30+0000",
        "2026-03-29 02:00+0100",
        "2026-03-29 02:30+0100",
    ]


def test_lord_howe_half_hour_dst() -> None:
    # 2026-10-04 02:00 +10:30 -> 02:30 +11:00: 02:15 does not exist, 02:45 does.
    skipped = next_fires("cron(15 2 * * ? *)", local(LORD_HOWE, 2026, 10, 3, 12), 2, tz=LORD_HOWE)
    assert wall(skipped, LORD_HOWE) == ["2026-10-05 02:15+1100", "2026-10-06 02:15+1100"]
    kept = next_fires("cron(45 2 * * ? *)", local(LORD_HOWE, 2026, 10, 3, 12), 1, tz=LORD_HOWE)
    assert kept == [utc(2026, 10, 3, 15, 45)]
    # 2026-04-05 02:00 +11:00 -> 01:30 +10:30: 01:45 happens twice, runs once (the +11:00 one).
    repeated = next_fires("cron(45 1 * * ? *)", local(LORD_HOWE, 2026, 4, 4, 12), 2, tz=LORD_HOWE)
    assert repeated == [utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)]
    every_15 = next_fires("cron(0/15 * * * ? *)", local(LORD_HOWE, 2026, 10, 4, 1, 50), 3, tz=LORD_HOWE)
    assert wall(every_15, LORD_HOWE) == [
        "2026-10-04 02:30+1100",
        "2026-10-04 02:45+1100",
        "2026-10-04 03:00+1100",
    ]


def test_kolkata_half_hour_offset() -> None:
    assert next_fires("cron(0 9 * * ? *)", utc(2026, 1, 1), 2, tz=KOLKATA) == [
        utc(2026, 1, 1, 3, 30),
        utc(2026, 1, 2, 3, 30),
    ]


# --------------------------------------------------------------------------------------------------
# cron(): start / end
# --------------------------------------------------------------------------------------------------


def test_cron_start_is_inclusive() -> None:
    schedule = parse_schedule("cron(0 12 * * ? *)")
    start = utc(2026, 3, 1, 12, 0)
    assert schedule.next_fire(utc(2026, 1, 1), tz=UTC_TZ, anchor=ANCHOR, start=start) == start
    start = utc(2026, 3, 1, 12, 0, 1)
    assert schedule.next_fire(utc(2026, 1, 1), tz=UTC_TZ, anchor=ANCHOR, start=start) == utc(2026, 3, 2, 12)
    # a start in the past changes nothing
    assert schedule.next_fire(utc(2026, 5, 1), tz=UTC_TZ, anchor=ANCHOR, start=start) == utc(2026, 5, 1, 12)


def test_cron_end_is_inclusive() -> None:
    end = utc(2026, 1, 3, 12, 0)
    fires = next_fires("cron(0 12 * * ? *)", utc(2026, 1, 1), 10, end=end)
    assert fires == [utc(2026, 1, 1, 12), utc(2026, 1, 2, 12), utc(2026, 1, 3, 12)]
    schedule = parse_schedule("cron(0 12 * * ? *)")
    assert schedule.next_fire(utc(2026, 2, 1), tz=UTC_TZ, anchor=ANCHOR, end=end) is None
    assert schedule.next_fire(utc(2026, 1, 2, 13), tz=UTC_TZ, anchor=ANCHOR, end=end - timedelta(seconds=1)) is None


# --------------------------------------------------------------------------------------------------
# cron(): errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "field", "message"),
    [
        # structure and the day-of-month / day-of-week rule
        (
            "cron(0 12 * * ?)",
            "expression",
            "expected 6 fields (minutes hours day-of-month month day-of-week year), got 5",
        ),
        (
            "cron(0 0 12 * * ? *)",
            "expression",
            "expected 6 fields (minutes hours day-of-month month day-of-week year), got 7",
        ),
        ("cron()", "expression", "got 0"),
        (
            "cron(0 12 * * * *)",
            "day-of-month",
            "day-of-month and day-of-week cannot both be '*'; one of them must be '?'",
        ),
        (
            "cron(0 12 ? * ? *)",
            "day-of-month",
            "day-of-month and day-of-week cannot both be '?'; exactly one of them must be '?'",
        ),
        (
            "cron(0 12 1 * MON *)",
            "day-of-month",
            "day-of-month '1' and day-of-week 'MON' cannot both be set; one of them must be '?'",
        ),
        ("cron(0 12 * * MON *)", "day-of-month", "day-of-month '*' and day-of-week 'MON' cannot both be set"),
        # minutes / hours
        ("cron(60 12 * * ? *)", "minutes", "minutes field '60': value 60 is out of range 0-59"),
        ("cron(-5 12 * * ? *)", "minutes", "minutes field '-5': missing value"),
        ("cron(5- 12 * * ? *)", "minutes", "minutes field '5-': missing value"),
        ("cron(*-5 12 * * ? *)", "minutes", "minutes field '*-5': '*' is not a valid value (expected 0-59)"),
        ("cron(1,,2 12 * * ? *)", "minutes", "minutes field '1,,2': empty entry in a ',' list"),
        ("cron(1, 12 * * ? *)", "minutes", "minutes field '1,': empty entry in a ',' list"),
        (
            "cron(*/0 12 * * ? *)",
            "minutes",
            "minutes field '*/0': increment '0' after '/' must be a positive integer",
        ),
        ("cron(*/x 12 * * ? *)", "minutes", "increment 'x' after '/' must be a positive integer"),
        ("cron(5/ 12 * * ? *)", "minutes", "increment '' after '/' must be a positive integer"),
        ("cron(/5 12 * * ? *)", "minutes", "minutes field '/5': missing value"),
        (
            "cron(? 12 * * ? *)",
            "minutes",
            "'?' is only allowed as the whole day-of-month or day-of-week field",
        ),
        ("cron(L 12 * * ? *)", "minutes", "minutes field 'L': 'L' is not a valid value (expected 0-59)"),
        ("cron(MON 12 * * ? *)", "minutes", "'MON' is not a valid value (expected 0-59)"),
        ("cron(1-2-3 12 * * ? *)", "minutes", "'2-3' is not a valid value"),
        ("cron(0 24 * * ? *)", "hours", "hours field '24': value 24 is out of range 0-23"),
        ("cron(0 1-24 * * ? *)", "hours", "value 24 is out of range 0-23"),
        # day-of-month
        ("cron(0 0 0 * ? *)", "day-of-month", "day-of-month field '0': value 0 is out of range 1-31"),
        ("cron(0 0 32 * ? *)", "day-of-month", "value 32 is out of range 1-31"),
        (
            "cron(0 0 L,15 * ? *)",
            "day-of-month",
            "'L' and 'W' cannot be combined with other values in a ',' list",
        ),
        ("cron(0 0 15W,20 * ? *)", "day-of-month", "'L' and 'W' cannot be combined"),
        (
            "cron(0 0 W * ? *)",
            "day-of-month",
            "'L' must be used as 'L', 'L-n' or 'LW', and 'W' after a single day",
        ),
        ("cron(0 0 1-15W * ? *)", "day-of-month", "'W' after a single day ('15W')"),
        ("cron(0 0 3L * ? *)", "day-of-month", "'L' must be used as 'L', 'L-n' or 'LW'"),
        ("cron(0 0 L-3W * ? *)", "day-of-month", "'L' must be used as 'L', 'L-n' or 'LW'"),
        ("cron(0 0 32W * ? *)", "day-of-month", "day-of-month field '32W': value 32 is out of range 1-31"),
        ("cron(0 0 0W * ? *)", "day-of-month", "value 0 is out of range 1-31"),
        ("cron(0 0 L-0 * ? *)", "day-of-month", "offset 0 in 'L-n' is out of range 1-30"),
        ("cron(0 0 L-31 * ? *)", "day-of-month", "offset 31 in 'L-n' is out of range 1-30"),
        ("cron(0 0 MON * ? *)", "day-of-month", "'MON' is not a valid value (expected 1-31)"),
        ("cron(0 0 1#2 * ? *)", "day-of-month", "'1#2' is not a valid value"),
        # month
        ("cron(0 0 1 13 ? *)", "month", "month field '13': value 13 is out of range 1-12"),
        ("cron(0 0 1 0 ? *)", "month", "value 0 is out of range 1-12"),
        ("cron(0 0 1 JANUARY ? *)", "month", "'JANUARY' is not a valid value (expected 1-12 or JAN-DEC)"),
        ("cron(0 0 1 ? ? *)", "month", "month field '?': '?' is only allowed as the whole day-of-month"),
        ("cron(0 0 1 L ? *)", "month", "month field 'L': 'L' is not a valid value"),
        # day-of-week
        ("cron(0 0 ? * 0 *)", "day-of-week", "day-of-week field '0': value 0 is out of range 1-7"),
        ("cron(0 0 ? * 8 *)", "day-of-week", "value 8 is out of range 1-7"),
        ("cron(0 0 ? * SUNDAY *)", "day-of-week", "'SUNDAY' is not a valid value (expected 1-7 or SUN-SAT)"),
        (
            "cron(0 0 ? * MON/2 *)",
            "day-of-week",
            "'/' is not allowed in the day-of-week field (allowed: , - * ? L #)",
        ),
        (
            "cron(0 0 ? * 3#1,6#3 *)",
            "day-of-week",
            "day-of-week field '3#1,6#3': '#' allows only one expression in the day-of-week field",
        ),
        ("cron(0 0 ? * 6#3,MON *)", "day-of-week", "'#' allows only one expression"),
        ("cron(0 0 ? * 6#0 *)", "day-of-week", "occurrence 0 after '#' is out of range 1-5"),
        ("cron(0 0 ? * 6#6 *)", "day-of-week", "occurrence 6 after '#' is out of range 1-5"),
        ("cron(0 0 ? * #3 *)", "day-of-week", "'#' must be written 'd#n'"),
        ("cron(0 0 ? * 6# *)", "day-of-week", "'#' must be written 'd#n'"),
        ("cron(0 0 ? * 8#1 *)", "day-of-week", "value 8 is out of range 1-7"),
        ("cron(0 0 ? * 5L,6 *)", "day-of-week", "'L' cannot be combined with other values in a ',' list"),
        ("cron(0 0 ? * L-2 *)", "day-of-week", "'L' must be used alone (Saturday) or after one weekday"),
        ("cron(0 0 ? * L5 *)", "day-of-week", "'L' must be used alone"),
        ("cron(0 0 ? * 8L *)", "day-of-week", "value 8 is out of range 1-7"),
        ("cron(0 0 ? * 1W *)", "day-of-week", "'1W' is not a valid value (expected 1-7 or SUN-SAT)"),
        # year
        ("cron(0 0 1 * ? 1969)", "year", "year field '1969': value 1969 is out of range 1970-2199"),
        ("cron(0 0 1 * ? 2200)", "year", "value 2200 is out of range 1970-2199"),
        (
            "cron(0 0 1 * ? 2030-2020)",
            "year",
            "range 2030-2020 runs backwards; the start must not be after the end",
        ),
        ("cron(0 0 1 * ? ?)", "year", "'?' is only allowed as the whole day-of-month or day-of-week field"),
        ("cron(0 0 1 * ? L)", "year", "'L' is not a valid value (expected 1970-2199)"),
    ],
)
def test_cron_errors(expression: str, field: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(expression)
    text = str(info.value)
    assert text.startswith(f"{expression}: ")
    assert message in text
    assert info.value.field == field


def test_cron_error_message_example_from_the_spec() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule("cron(0 12 * * * *)")
    assert str(info.value) == (
        "cron(0 12 * * * *): day-of-month and day-of-week cannot both be '*'; one of them must be '?'"
    )


def test_cron_accepts_extra_whitespace_between_fields() -> None:
    assert isinstance(parse_schedule("cron(0  12 * *   ? *)"), CronSchedule)


# --------------------------------------------------------------------------------------------------
# at()
# --------------------------------------------------------------------------------------------------


def test_at_fires_once_at_local_time() -> None:
    schedule = parse_schedule("at(2026-07-01T09:00:00)")
    fire = utc(2026, 7, 1, 13, 0)  # 09:00 EDT
    assert schedule.next_fire(utc(2026, 1, 1), tz=NEW_YORK, anchor=ANCHOR) == fire
    assert schedule.next_fire(fire - timedelta(microseconds=1), tz=NEW_YORK, anchor=ANCHOR) == fire
    assert schedule.next_fire(fire, tz=NEW_YORK, anchor=ANCHOR) is None
    assert schedule.next_fire(utc(2027, 1, 1), tz=NEW_YORK, anchor=ANCHOR) is None
    assert schedule.next_fire(utc(2026, 1, 1), tz=UTC_TZ, anchor=ANCHOR) == utc(2026, 7, 1, 9, 0)
    assert schedule.next_fire(utc(2026, 1, 1), tz=KOLKATA, anchor=ANCHOR) == utc(2026, 7, 1, 3, 30)


def test_at_keeps_seconds() -> None:
    schedule = parse_schedule("at(2026-07-01T09:00:42)")
    assert schedule.next_fire(ANCHOR, tz=UTC_TZ, anchor=ANCHOR) == utc(2026, 7, 1, 9, 0, 42)


def test_at_ignores_start_and_end() -> None:
    schedule = parse_schedule("at(2026-07-01T09:00:00)")
    fire = schedule.next_fire(utc(2026, 1, 1), tz=UTC_TZ, anchor=ANCHOR, start=utc(2026, 8, 1), end=utc(2026, 2, 1))
    assert fire == utc(2026, 7, 1, 9, 0)


def test_at_in_a_spring_forward_gap_fires_when_the_gap_ends() -> None:
    # 02:30 does not exist in New York on 2026-03-08; fire at 03:00 EDT, the first valid instant after it.
    schedule = parse_schedule("at(2026-03-08T02:30:00)")
    assert schedule.next_fire(ANCHOR, tz=NEW_YORK, anchor=ANCHOR) == utc(2026, 3, 8, 7, 0)
    # Lord Howe's gap is 02:00-02:30 (+10:30 -> +11:00)
    schedule = parse_schedule("at(2026-10-04T02:10:00)")
    assert schedule.next_fire(ANCHOR, tz=LORD_HOWE, anchor=ANCHOR) == utc(2026, 10, 3, 15, 30)


def test_at_in_a_fall_back_overlap_fires_at_the_first_occurrence() -> None:
    schedule = parse_schedule("at(2026-11-01T01:30:00)")
    assert schedule.next_fire(ANCHOR, tz=NEW_YORK, anchor=ANCHOR) == utc(2026, 11, 1, 5, 30)
    assert schedule.next_fire(utc(2026, 11, 1, 5, 30), tz=NEW_YORK, anchor=ANCHOR) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "at(2026-02-30T00:00:00)",
            "date-time '2026-02-30T00:00:00' is not valid: day is out of range for month",
        ),
        ("at(2026-13-01T00:00:00)", "date-time '2026-13-01T00:00:00' is not valid: month must be in 1..12"),
        ("at(2026-07-01T24:00:00)", "is not valid: hour must be in 0..23"),
        ("at(2026-07-01T09:60:00)", "is not valid: minute must be in 0..59"),
        ("at(2026-07-01 09:00:00)", "date-time '2026-07-01 09:00:00' must have the form yyyy-mm-ddThh:mm:ss"),
        ("at(2026-07-01T09:00)", "must have the form yyyy-mm-ddThh:mm:ss"),
        ("at(2026-07-01)", "must have the form yyyy-mm-ddThh:mm:ss"),
        ("at(2026-07-01t09:00:00)", "must have the form yyyy-mm-ddThh:mm:ss"),
        ("at(2026-07-01T09:00:00Z)", "must have the form yyyy-mm-ddThh:mm:ss"),
        ("at()", "date-time '' must have the form yyyy-mm-ddThh:mm:ss"),
    ],
)
def test_at_errors(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(expression)
    assert str(info.value).startswith(f"{expression}: ")
    assert message in str(info.value)
    assert info.value.field == "date-time"


# --------------------------------------------------------------------------------------------------
# fires_between
# --------------------------------------------------------------------------------------------------


def test_fires_between_rate_is_exclusive_of_after_and_inclusive_of_until() -> None:
    anchor = utc(2026, 1, 1, 0, 0)
    fires = fires_between(
        parse_schedule("rate(15 minutes)"),
        utc(2026, 1, 1, 1, 0),
        utc(2026, 1, 1, 2, 0),
        tz=UTC_TZ,
        anchor=anchor,
    )
    assert fires == [
        utc(2026, 1, 1, 1, 15),
        utc(2026, 1, 1, 1, 30),
        utc(2026, 1, 1, 1, 45),
        utc(2026, 1, 1, 2, 0),
    ]


def test_fires_between_cron_across_spring_forward() -> None:
    fires = fires_between(
        parse_schedule("cron(30 * * * ? *)"),
        local(NEW_YORK, 2026, 3, 8, 0, 0),
        local(NEW_YORK, 2026, 3, 8, 4, 0),
        tz=NEW_YORK,
        anchor=ANCHOR,
    )
    assert wall(fires, NEW_YORK) == [
        "2026-03-08 00:30-0500",
        "2026-03-08 01:30-0500",
        "2026-03-08 03:30-0400",
    ]


def test_fires_between_respects_start_end_and_limit() -> None:
    schedule = parse_schedule("cron(0 * * * ? *)")
    fires = fires_between(
        schedule,
        utc(2026, 1, 1),
        utc(2026, 1, 2),
        tz=UTC_TZ,
        anchor=ANCHOR,
        start=utc(2026, 1, 1, 10),
        end=utc(2026, 1, 1, 12),
    )
    assert fires == [utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)]
    limited = fires_between(schedule, utc(2026, 1, 1), utc(2027, 1, 1), tz=UTC_TZ, anchor=ANCHOR, limit=5)
    assert limited == [utc(2026, 1, 1, h) for h in range(1, 6)]
    assert fires_between(schedule, utc(2026, 1, 1), utc(2027, 1, 1), tz=UTC_TZ, anchor=ANCHOR, limit=0) == []


def test_fires_between_default_limit_caps_long_downtime() -> None:
    fires = fires_between(
        parse_schedule("cron(* * * * ? *)"), utc(2026, 1, 1), utc(2026, 3, 1), tz=UTC_TZ, anchor=ANCHOR
    )
    assert len(fires) == 10_000
    assert fires[0] == utc(2026, 1, 1, 0, 1)
    assert fires[-1] == utc(2026, 1, 1) + timedelta(minutes=10_000)


def test_fires_between_at_and_empty_windows() -> None:
    at = parse_schedule("at(2026-07-01T09:00:00)")
    assert fires_between(at, utc(2026, 1, 1), utc(2026, 12, 31), tz=UTC_TZ, anchor=ANCHOR) == [utc(2026, 7, 1, 9, 0)]
    assert fires_between(at, utc(2026, 1, 1), utc(2026, 6, 30), tz=UTC_TZ, anchor=ANCHOR) == []
    cron = parse_schedule("cron(0 12 * * ? *)")
    assert fires_between(cron, utc(2026, 1, 2), utc(2026, 1, 1), tz=UTC_TZ, anchor=ANCHOR) == []


def test_fires_between_requires_aware_until() -> None:
    with pytest.raises(ValueError, match="until must be a timezone-aware datetime"):
        fires_between(parse_schedule("rate(1 hour)"), utc(2026, 1, 1), datetime(2026, 1, 2), tz=UTC_TZ, anchor=ANCHOR)


# --------------------------------------------------------------------------------------------------
# APScheduler trigger
# --------------------------------------------------------------------------------------------------


def test_apscheduler_trigger_wraps_a_schedule() -> None:
    trigger = AwsScheduleTrigger("cron(0 9 ? * MON-FRI *)", tz=NEW_YORK, anchor=ANCHOR)
    assert isinstance(trigger, BaseTrigger)
    assert isinstance(trigger.schedule, CronSchedule)
    # Friday 2026-01-02 10:00 EST: next is Monday 09:00 EST
    now = local(NEW_YORK, 2026, 1, 2, 10, 0)
    first = trigger.get_next_fire_time(None, now)
    assert first == utc(2026, 1, 5, 14, 0)
    assert trigger.get_next_fire_time(first, now) == utc(2026, 1, 6, 14, 0)
    # with no previous fire, a fire due exactly now still counts
    assert trigger.get_next_fire_time(None, local(NEW_YORK, 2026, 1, 5, 9, 0)) == utc(2026, 1, 5, 14, 0)
    # end bound and one-time schedules end the job
    bounded = AwsScheduleTrigger(parse_schedule("rate(1 hour)"), tz=UTC_TZ, anchor=ANCHOR, end=utc(2026, 1, 1, 2))
    assert bounded.get_next_fire_time(utc(2026, 1, 1, 2), utc(2026, 1, 1, 2)) is None
    once = AwsScheduleTrigger("at(2026-01-01T00:30:00)", tz=UTC_TZ, anchor=ANCHOR)
    assert once.get_next_fire_time(None, utc(2026, 1, 1)) == utc(2026, 1, 1, 0, 30)
    assert once.get_next_fire_time(utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 30)) is None
    assert str(trigger) == "aws[cron(0 9 ? * MON-FRI *), tz=America/New_York]"


# --------------------------------------------------------------------------------------------------
# case-insensitivity
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("cron(0 9 ? jan-mar fri *)", "cron(0 9 ? JAN-MAR FRI *)"),
        ("cron(0 9 ? * fril *)", "cron(0 9 ? * FRIL *)"),
        ("cron(0 9 ? * mon#2 *)", "cron(0 9 ? * MON#2 *)"),
        ("cron(0 9 ? * l *)", "cron(0 9 ? * L *)"),
        ("cron(0 9 l * ? *)", "cron(0 9 L * ? *)"),
        ("cron(0 9 lw * ? *)", "cron(0 9 LW * ? *)"),
        ("cron(0 9 15w * ? *)", "cron(0 9 15W * ? *)"),
        ("cron(0 9 l-2 * ? *)", "cron(0 9 L-2 * ? *)"),
    ],
)
def test_names_and_letters_are_case_insensitive(lower: str, upper: str) -> None:
    assert next_fires(lower, utc(2026, 1, 1), 6) == next_fires(upper, utc(2026, 1, 1), 6)
    assert len(next_fires(upper, utc(2026, 1, 1), 6)) == 6


def test_error_messages_quote_the_field_as_written() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule("cron(0 0 1 january ? *)")
    assert str(info.value) == (
        "cron(0 0 1 january ? *): month field 'january': 'january' is not a valid value (expected 1-12 or JAN-DEC)"
    )


def test_extreme_datetimes_do_not_crash() -> None:
    cron = parse_schedule("cron(0 0 * * ? *)")
    assert cron.next_fire(datetime.max.replace(tzinfo=UTC), tz=KOLKATA, anchor=ANCHOR) is None
    assert cron.next_fire(datetime.min.replace(tzinfo=UTC), tz=UTC_TZ, anchor=ANCHOR) == utc(1970, 1, 1)
    early = parse_schedule("at(0001-01-01T00:00:00)")
    assert early.next_fire(ANCHOR, tz=KOLKATA, anchor=ANCHOR) is None
    late = parse_schedule("at(9999-12-31T23:00:00)")
    assert late.next_fire(ANCHOR, tz=NEW_YORK, anchor=ANCHOR) is None
