"""What an in-process handler prints goes to the hub's log, as the `python` runtime forwards its workers' lines.

On Lambda a function's stdout and stderr end in its log stream. The `python` runtime reads its workers' pipes and
logs each line through `hub.function`, tagged with the function and the request id, and masked like every log line
(hub/redact.py). An in-process handler shares the hub's stdout and stderr, so without this its `print()` would reach
the terminal raw: untagged, and with any secret in it.

While an in-process function exists, `sys.stdout` and `sys.stderr` are `Capture` streams. A write made while a
handler runs (`Printed` puts the invocation in the handler's context) is cut into lines, and each line is logged
as a worker's would be; a line still open when the invocation ends is logged then. Any other write (the hub's own,
a thread the handler started without its context) goes to the stream that was there before. The hub's log handler
holds the original stderr, so a log line never comes back through here.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
from typing import Any, TextIO

from hub.logs import fields

log = logging.getLogger("hub.function")


class Printed:
    """One invocation's output: `with Printed(function, request_id):` around the handler's run makes what it prints
    (in this context, and in contexts copied from it: a sync handler's thread) that invocation's log lines."""

    __slots__ = ("function", "lock", "pending", "request_id", "token")

    def __init__(self, function: str, request_id: str) -> None:
        self.function = function
        self.request_id = request_id
        self.pending = ""
        self.lock = threading.Lock()  # a handler's own threads may share its context
        self.token: contextvars.Token[Printed | None] | None = None

    def __enter__(self) -> Printed:
        self.token = _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            _current.reset(self.token)
        with self.lock:
            rest, self.pending = self.pending, ""
        if rest:
            self._log([rest])

    def write(self, text: str) -> None:
        """Add printed text; each line it completes is logged."""
        with self.lock:
            *lines, self.pending = (self.pending + text).split("\n")
        if lines:
            self._log(lines)

    def _log(self, lines: list[str]) -> None:
        extra = fields(function=self.function, request_id=self.request_id)
        token = _current.set(None)  # a log handler writing to sys.stderr itself does not come back here
        try:
            for line in lines:
                log.info(line, extra=extra)
        finally:
            _current.reset(token)


_current: contextvars.ContextVar[Printed | None] = contextvars.ContextVar("hub_handler_output", default=None)


class Capture(io.TextIOBase):
    """A stand-in for sys.stdout or sys.stderr: a handler's writes to the log, everything else to `original`."""

    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        """Log it if a handler wrote it, else write it to the original stream."""
        invocation = _current.get()
        if invocation is None:
            return self.original.write(text)
        invocation.write(text)
        return len(text)

    def flush(self) -> None:
        """Flush the original stream."""
        self.original.flush()

    def fileno(self) -> int:
        """The original stream's descriptor (a subprocess a handler starts inherits it)."""
        return self.original.fileno()

    def isatty(self) -> bool:
        """Whether the original stream is a terminal."""
        return self.original.isatty()

    def writable(self) -> bool:
        """Always: it is an output stream."""
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The original stream's encoding."""
        return self.original.encoding

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def install() -> None:
    """Make sys.stdout and sys.stderr Capture streams (once; the hub's log handler keeps the original stderr)."""
    if not isinstance(sys.stdout, Capture):
        sys.stdout = Capture(sys.stdout)
    if not isinstance(sys.stderr, Capture):
        sys.stderr = Capture(sys.stderr)
