"""Logging: readable lines by default, one JSON object per line with `--log-format json`.

Call sites pass structured fields as `extra={"fields": {...}}`; both formats show them. `tag(...)` adds fields to
every line of the process (a mapping's extra poller processes tag theirs with `poller=<i>`). Both formats mask the
configuration's secrets (hub/redact.py) in the whole line: message, fields and traceback, whatever carried them.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub import redact


def fields(**values: Any) -> dict[str, Any]:
    """The `extra` of a log call whose key=value fields the formatters show: `log.info("...",
    extra=fields(mapping=name))`."""
    return {"fields": values}


class _Tag(logging.Filter):
    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__()
        self.values = values

    def filter(self, record: logging.LogRecord) -> bool:
        # a new dict: a call site may pass the same fields dict to many log calls
        record.fields = {**self.values, **(getattr(record, "fields", None) or {})}
        return True


def tag(**values: Any) -> None:
    """Show these fields on every log line from now on (call after setup)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Tag(values))


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """One line per record: time, level, logger, message, then the record's fields as key=value (and a traceback
    below)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one text line (plus its traceback, if any)."""
        extra = getattr(record, "fields", None) or {}
        tail = " ".join(f"{k}={_show(v)}" for k, v in extra.items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if tail:
            line += "  " + tail
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact.text(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the fields, and the traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        line = json.dumps(out, default=str)
        if redact.active().found_in(line):
            # masked value by value, not in the encoded line, so that the line stays valid JSON
            line = json.dumps(redact.data(out), default=str)
        return line


def _show(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def setup(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at `level` in `fmt` (text or json), masking secrets, with client libraries' repeated lines
    counted instead of repeated (RepeatGate)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries log every reconnect attempt (aiormq as errors, aiokafka hundreds a second); the mapping logs
    # once per change of state (hub.health): their INFO chatter is cut here, and RepeatGate lets through one line of
    # each kind of theirs, then counts the repeats.
    quiet = {
        "watchdog": logging.WARNING,
        "asyncio": logging.WARNING,
        "apscheduler": logging.WARNING,
        "aiokafka": logging.WARNING,
        "botocore": logging.WARNING,
        "aiobotocore": logging.WARNING,
        "aio_pika": logging.WARNING,
        "aiormq": logging.CRITICAL,
    }
    for name, floor in quiet.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    handler.addFilter(_repeats)


# ---- client libraries: one line per kind of trouble, then a count -------------------------------------------------

LIBRARIES = frozenset(
    {"aiokafka", "aio_pika", "aiormq", "botocore", "aiobotocore", "boto3", "s3transfer", "urllib3", "redis"}
    | {"watchdog", "asyncio", "apscheduler", "aiohttp", "aiosqlite", "kafka"}
)
"""Top-level loggers of the client libraries the hub uses: RepeatGate governs their lines (and only theirs)."""
QUIET_AFTER = 5.0
"""A kind of line not seen for this long has stopped: its repeats are summed up in one line."""
SUMMARY_EVERY = 60.0
"""A kind that goes on is summed up this often."""


@dataclass(slots=True)
class _Kind:
    first: float
    last: float
    record: logging.LogRecord
    repeats: int = 0


class RepeatGate(logging.Filter):
    """The hub's rule for client libraries' loggers: one line per change of state, with a count.

    A line's kind is its logger, level and message template (`Unable connect to node with id %s: %s`, whatever the
    node). The first line of a kind passes; its repeats are counted and dropped; once the kind has been quiet for
    `quiet` seconds (it stopped), or every `every` seconds while it goes on, one line says how often it repeated
    (`... (repeated 731 times in 21s)`), and a kind that stopped passes again the next time it starts. Lines of
    the hub's own loggers pass untouched. `flush()` writes the counts that are due (the mappings' monitors call it
    twice a second; every line that passes calls it too, at most as often; and it runs at exit for what is left).
    """

    def __init__(
        self, quiet: float = QUIET_AFTER, every: float = SUMMARY_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.quiet = quiet
        self.every = every
        self.clock = clock
        self._kinds: dict[tuple[str, int, str], _Kind] = {}
        self._lock = threading.Lock()  # libraries log from their own threads too (watchdog's observer)
        self._next_flush = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass the first line of each kind of a client library's lines, count its repeats; the hub's own lines
        always pass."""
        if getattr(record, "repeat_summary", False) or record.name.partition(".")[0] not in LIBRARIES:
            if self._kinds and self.clock() >= self._next_flush:
                self.flush()
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None:
                self._kinds[key] = _Kind(now, now, record)
                return True
            kind.last, kind.record = now, record
            kind.repeats += 1
            return False

    def flush(self, final: bool = False) -> None:
        """Write the counts that are due (all of them if `final`)."""
        now = self.clock()
        due: list[logging.LogRecord] = []
        with self._lock:
            self._next_flush = now + 0.5
            for key, kind in list(self._kinds.items()):
                stopped = final or now - kind.last >= self.quiet
                if stopped:
                    del self._kinds[key]
                if kind.repeats and (stopped or now - kind.first >= self.every):
                    due.append(_summary(kind))
                    kind.first, kind.repeats = now, 0
        for record in due:  # outside the lock: handling a record runs this filter again
            logging.getLogger(record.name).handle(record)


def _summary(kind: _Kind) -> logging.LogRecord:
    last = kind.record
    times = "1 time" if kind.repeats == 1 else f"{kind.repeats} times"
    text = f"{last.getMessage()} (repeated {times} in {max(kind.last - kind.first, 0.0):.0f}s)"
    record = logging.makeLogRecord({**last.__dict__, "msg": text, "args": None, "exc_info": None, "exc_text": None})
    record.created = time.time()
    record.msecs = (record.created % 1) * 1000
    record.repeat_summary = True
    return record


_repeats = RepeatGate()
atexit.register(_repeats.flush, True)  # after logging's own exit hook, so it runs first (`hub run` says it itself)


def flush_repeats(final: bool = False) -> None:
    """Write the repeat counts of client libraries' lines that are due (all of them if `final`: see RepeatGate)."""
    _repeats.flush(final)
