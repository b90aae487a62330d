"""`Inbox`: the records a push-based client library hands over (a callback per message), read as a lane reads.

RabbitMQ (aio-pika) and MQTT (paho) push messages to a callback; the lane's `read` must take them in batches,
wait at most its timeout, and say when the connection is gone. An Inbox is that one queue and its end:

- `put(record)` from the client's callback;
- `end(exc)` when the connection or the consumer is lost: reads raise ConnectionError (the mapping reopens the
  source) once what was received before has been read; `close()` when the source is closed: reads raise LaneEnded;
- `reset()` at each open: a fresh queue, nothing lost, nothing ended;
- `ended` is set by either, and `lost` holds the reason of `end`.
"""

from __future__ import annotations

import asyncio

from hub.records import Record
from hub.source import LaneEnded


class Inbox:
    """Records pushed by a client library, read in batches (see the module docstring)."""

    def __init__(self, key: str, where: str) -> None:
        self.key = key
        """The lane's key (in LaneEnded)."""
        self.where = where
        """The broker's address without credentials (in ConnectionError messages)."""
        self.closed = asyncio.Event()
        self.ended = asyncio.Event()
        self.lost: BaseException | None = None
        self._queue: asyncio.Queue[Record | None] = asyncio.Queue()

    def reset(self) -> None:
        """A fresh, open inbox (the source opens again)."""
        self.closed.clear()
        self.ended.clear()
        self.lost = None
        self._queue = asyncio.Queue()

    def put(self, record: Record) -> None:
        """Add a pushed record; reads return it in arrival order."""
        self._queue.put_nowait(record)

    def end(self, exc: BaseException) -> None:
        """The connection is gone: once what arrived before is read, reads raise ConnectionError. Only the first
        reason is kept; nothing happens after close()."""
        if self.closed.is_set() or self.lost is not None:
            return
        self.lost = exc
        self.ended.set()
        self._queue.put_nowait(None)

    def close(self) -> None:
        """The source is closed: reads raise LaneEnded."""
        self.closed.set()
        self.ended.set()
        self._queue.put_nowait(None)

    @property
    def failure(self) -> ConnectionError | None:
        """What `lanes()` raises once the inbox ended because the connection was lost (None when it was closed)."""
        if self.lost is not None and not self.closed.is_set():
            return ConnectionError(f"{self.where}: {self.lost}")
        return None

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` records; [] after `timeout` seconds without one (None: wait for ever)."""
        queue = self._queue
        if not queue.empty():
            first = queue.get_nowait()
        elif timeout is None:
            first = await queue.get()
        else:
            try:
                async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it can swallow a cancellation
                    first = await queue.get()
            except TimeoutError:
                return []
        out: list[Record] = []
        item: Record | None = first
        while item is not None:
            out.append(item)
            if len(out) >= limit or queue.empty():
                return out
            item = queue.get_nowait()
        queue.put_nowait(None)  # the end mark stays for the next read
        if out:
            return out
        if self.closed.is_set():
            raise LaneEnded(self.key)
        raise ConnectionError(f"{self.where}: {self.lost}")
