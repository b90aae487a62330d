"""Logging: readable lines by default, one JSON object per line with `--log-format json`.

Call sites pass structured fields as `extra={"fields": {...}}`; both formats show them. `tag(...)` adds fields to
every line of the process (a mapping's extra poller processes tag theirs with `poller=<i>`). Both formats mask the
configuration's secrets (hub/redact.py) in the whole line: message, fields and traceback, whatever carried them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from hub import redact


def fields(**values: Any) -> dict[str, Any]:
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
    def format(self, record: logging.LogRecord) -> str:
        extra = getattr(record, "fields", None) or {}
        tail = " ".join(f"{k}={_show(v)}" for k, v in extra.items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if tail:
            line += "  " + tail
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact.text(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries log every reconnect attempt (aiormq as errors); the mapping logs once per change of state.
    quiet = {
        "watchdog": logging.WARNING,
        "asyncio": logging.WARNING,
        "apscheduler": logging.WARNING,
        "aiokafka": logging.WARNING,
        "botocore": logging.WARNING,
        "aiobotocore": logging.WARNING,
        "aio_pika": logging.WARNING,
        "aiormq": logging.CRITICAL,
        "aiokafka.client": logging.CRITICAL,
    }
    for name, floor in quiet.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
