"""Epoch times as the ISO-8601 UTC text AWS writes (`2024-06-10T06:13:20.123Z`), for any time a broker can hold.

Python's datetime stops at the years 1 and 9999; a Kafka timestamp (any int64 of milliseconds a producer sets) or
a file's mtime can lie beyond them. Such a time is written as Java's `Instant` writes it (the Lambda service is
Java): a year past 9999 with a `+`, a year before 1 in ISO's astronomical numbering (`0000` is 1 BC, `-0001` 2 BC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_CYCLE_MS = 146_097 * 86_400_000
"""The Gregorian calendar repeats every 400 years, 146,097 days."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds."""
    try:
        return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return _far(int(epoch_ms))


def iso_seconds(epoch: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds (cut, not rounded)."""
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return _far(int(epoch * 1000)) if epoch == epoch and abs(epoch) != float("inf") else str(epoch)


def _far(epoch_ms: int) -> str:
    """A time outside datetime's years: moved by whole 400-year cycles into them, written, its year moved back."""
    cycles, rest = divmod(epoch_ms, _CYCLE_MS)
    moved = _EPOCH + timedelta(milliseconds=rest)
    year = moved.year + 400 * cycles
    sign = "+" if year > 9999 else "-" if year < 0 else ""
    return f"{sign}{abs(year):04d}{moved.isoformat(timespec='milliseconds')[4:].replace('+00:00', 'Z')}"
