"""The in-process broker of the `memory` connector: named channels, each a stream (ordered logs, one per lane) or a
queue (messages deleted when settled, delivered again when they fail), shared by every source of the process.

Records may be put from any thread; readers wait on their own event loop and are woken from whichever thread puts.
A channel can be cut and restored (`cut`, `restore`), which plays a broker that went away: while cut, opening a
source, reading and settling raise ConnectionError, and what a failed settle held is delivered again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import threading
import time
import uuid
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["stream", "queue"]
ENTRY_OVERHEAD = 250
"""Bytes a record adds to an event besides its data: ids, attributes, ARN."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One record as the channel keeps it: its data, the key that chose its lane, when it was put, its size."""

    data: Any
    key: str | None
    sent: float
    size: int


@dataclass(slots=True)
class Message:
    """A queue's message. `deliveries` counts every delivery, the one in flight included; `holder` is the reader
    that holds it (None: it waits in the queue)."""

    id: str
    entry: Entry
    deliveries: int = 0
    holder: object | None = None


class _Wakeups:
    """Readers waiting for something to change, each on its own event loop. Callers hold the channel's lock."""

    def __init__(self) -> None:
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def register(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        self._waiting.add(entry)
        future.add_done_callback(lambda _f: self._waiting.discard(entry))
        return future

    def wake(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, future in list(self._waiting):
            if loop is running:
                _resolve(future)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait(future: asyncio.Future[None], timeout: float | None) -> None:
    """Wait until `future` is woken or `timeout` seconds passed (None: no limit)."""
    try:
        await asyncio.wait_for(future, timeout)
    except TimeoutError:
        pass
    finally:
        future.cancel()


class Channel(ABC):
    """What streams and queues share: a name, a lock, readers to wake, and the cut switch."""

    mode: Mode

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.wakeups = _Wakeups()
        self.is_cut = False

    def check(self) -> None:
        """Raise ConnectionError while the channel is cut."""
        if self.is_cut:
            raise ConnectionError(f"memory channel {self.name!r} is cut")

    def wake(self) -> None:
        """Wake every read waiting on the channel (records arrived, or a source closed)."""
        with self.lock:
            self.wakeups.wake()

    @abstractmethod
    def put(self, values: Iterable[Any], key: str | None = None, sent: float | None = None) -> list[Any]:
        """Add records (sent at `sent`, epoch seconds; default now); returns where each went."""

    @staticmethod
    def entry(data: Any, key: str | None, sent: float | None) -> Entry:
        """An entry of `data` with its key and send time (now when None), and the bytes it adds to an event."""
        size = ENTRY_OVERHEAD + len(json.dumps(data, default=str)) + len(key or "")
        return Entry(data, key, time.time() if sent is None else sent, size)


class StreamChannel(Channel):
    """Ordered logs, one per lane; a record's position is its offset in its lane's log. Nothing is ever removed."""

    mode: Mode = "stream"

    def __init__(self, name: str, lanes: int) -> None:
        super().__init__(name)
        self.logs: list[list[Entry]] = [[] for _ in range(lanes)]
        self._round = itertools.count()

    @property
    def lanes(self) -> int:
        """How many ordered logs (lanes) the stream has."""
        return len(self.logs)

    def put(self, values: Iterable[Any], key: str | None = None, sent: float | None = None) -> list[Any]:
        """Append each value to the lane of `key` (crc32, stable across processes), else round-robin; return their
        (lane, offset)."""
        placed = []
        with self.lock:
            for value in values:
                lane = (
                    zlib.crc32(key.encode()) % len(self.logs) if key is not None else next(self._round) % len(self.logs)
                )
                self.logs[lane].append(self.entry(value, key, sent))
                placed.append((lane, len(self.logs[lane]) - 1))
            self.wakeups.wake()
        return placed

    def end(self, lane: int) -> int:
        """The offset the next record of `lane` will have."""
        with self.lock:
            return len(self.logs[lane])

    def read(self, lane: int, start: int, limit: int) -> tuple[list[Entry], asyncio.Future[None] | None]:
        """Up to `limit` entries of `lane` from offset `start`; when there are none, a future woken at the next put."""
        with self.lock:
            self.check()
            entries = self.logs[lane][start : start + limit]
            return entries, None if entries else self.wakeups.register()


class QueueChannel(Channel):
    """Messages in the order they were put. A delivered message is held by its reader until it is deleted
    (settled), released (failed: back after `delay`) or its reader lets go of everything (closed)."""

    mode: Mode = "queue"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.messages: dict[str, Message] = {}
        self._ready: deque[str] = deque()
        self._delayed: list[tuple[float, int, str]] = []  # (monotonic due time, tie-breaker, id): a heap
        self._ties = itertools.count()

    def put(self, values: Iterable[Any], key: str | None = None, sent: float | None = None) -> list[Any]:
        """Add messages at the end of the queue; returns their ids."""
        ids = []
        with self.lock:
            for value in values:
                message = Message(str(uuid.uuid4()), self.entry(value, key, sent))
                self.messages[message.id] = message
                self._ready.append(message.id)
                ids.append(message.id)
            self.wakeups.wake()
        return ids

    def take(self, limit: int, holder: object) -> tuple[list[Message], asyncio.Future[None] | None, float | None]:
        """Up to `limit` waiting messages, now held by `holder`, their deliveries counted. When there are none: a
        future woken at the next put or release, and the seconds until a delayed message is due (None: none is)."""
        with self.lock:
            self.check()
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                self._ready.append(heapq.heappop(self._delayed)[2])
            taken: list[Message] = []
            while self._ready and len(taken) < limit:
                message = self.messages.get(self._ready.popleft())
                if message is None or message.holder is not None:
                    continue  # deleted meanwhile
                message.holder = holder
                message.deliveries += 1
                taken.append(message)
            if taken:
                return taken, None, None
            due = self._delayed[0][0] - now if self._delayed else None
            return taken, self.wakeups.register(), due

    def settle(self, done: Iterable[tuple[str, int]], failed: Iterable[tuple[str, int]], delay: float) -> None:
        """Delete the `done` deliveries and release the `failed` ones; a delivery (id, count) that is no longer
        held (its reader closed and the message went back) is left alone: it will be delivered again."""
        with self.lock:
            for message_id, deliveries in done:
                message = self.messages.get(message_id)
                if message is not None and message.holder is not None and message.deliveries == deliveries:
                    del self.messages[message_id]
            back = [self._held(message_id, deliveries) for message_id, deliveries in failed]
            self._release([m for m in back if m is not None], delay)

    def _held(self, message_id: str, deliveries: int) -> Message | None:
        message = self.messages.get(message_id)
        if message is None or message.holder is None or message.deliveries != deliveries:
            return None
        return message

    def let_go(self, holder: object) -> None:
        """Every message `holder` holds goes back to the queue at once (its reader closed, as a broker requeues
        what a closed connection had not acknowledged)."""
        with self.lock:
            self._release([m for m in self.messages.values() if m.holder is holder], 0.0)

    def _release(self, messages: list[Message], delay: float) -> None:
        for message in messages:
            message.holder = None
            if delay > 0:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._ties), message.id))
            else:
                self._ready.append(message.id)
        if messages:
            self.wakeups.wake()

    def waiting(self) -> int:
        """Messages not deleted yet, held or not."""
        with self.lock:
            return len(self.messages)


@dataclass
class Broker:
    """The channels of this process, by name."""

    channels: dict[str, Channel] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, name: str, mode: Mode = "stream", lanes: int = 1) -> tuple[Channel, bool]:
        """The channel `name`, made if it does not exist (True: made now). ValueError if it exists with another
        mode or lane count."""
        with self.lock:
            channel = self.channels.get(name)
            if channel is None:
                channel = StreamChannel(name, lanes) if mode == "stream" else QueueChannel(name)
                self.channels[name] = channel
                return channel, True
        if channel.mode != mode or (isinstance(channel, StreamChannel) and channel.lanes != lanes):
            shape = f"a stream of {channel.lanes} lanes" if isinstance(channel, StreamChannel) else "a queue"
            wanted = f"a stream of {lanes} lanes" if mode == "stream" else "a queue"
            raise ValueError(f"memory channel {name!r} is {shape}, not {wanted}")
        return channel, False

    def get(self, name: str) -> Channel:
        """The channel of this name; KeyError when no source or producer made it yet."""
        with self.lock:
            channel = self.channels.get(name)
        if channel is None:
            raise KeyError(f"no memory channel {name!r}: open a source on it or create it first")
        return channel


BROKER = Broker()
"""This process's channels."""
