"""The `redis` source: one unordered lane per stream, read by one consumer of the group (see the package
docstring)."""

from __future__ import annotations

import asyncio
import operator
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any

from connectors.redis_streams.config import RedisStreamsConfig, public_url
from connectors.redis_streams.events import (
    ENCODING_ERRORS,
    FIELD_OVERHEAD,
    RECORD_OVERHEAD,
    filter_view,
    is_text,
    split_binary,
)
from hub.backoff import cancelling
from hub.health import STALL_GRACE
from hub.records import Lag, Outcome, Record
from hub.source import LaneEnded, SourceContext

STARTING_IDS = {"TRIM_HORIZON": "0", "LATEST": "$"}
_position = operator.attrgetter("position")
READ_AHEAD = 4
"""XREADGROUPs sent ahead after a full read, while the hub works on what it read (see StreamLane._read_ahead)..."""
READ_AHEAD_ENTRIES = 1000
"""... as long as they ask for fewer entries than this in all: small batches gain from more reads in flight, big
ones need fewer."""


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """The entries of an XREADGROUP reply for one stream (RESP2: [[key, entries]]; RESP3: {key: [entries]})."""
    if not reply:
        return []
    if isinstance(reply, dict):
        (value,) = reply.values()
        return list(value[0] if value and isinstance(value[0], list) else value)
    return list(reply[0][1])


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume the outcome of a task nobody awaits any more (asyncio logs exceptions never retrieved)."""
    if not task.cancelled():
        task.exception()


class RedisStreamsSource:
    """One unordered lane per stream, read by one consumer of the group."""

    def __init__(self, config: RedisStreamsConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.group = config.consumer_group or context.mapping
        self.consumer = config.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        self.where = public_url(config.url)
        self.client: Any = None
        self._lanes = {name: StreamLane(self, name) for name in config.streams}
        self._closed = asyncio.Event()

    def _log_fields(self, **more: Any) -> dict[str, Any]:
        return {"fields": {"mapping": self.context.mapping, **more}}

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the consumer group on every stream if it is missing, and make a lane per stream that first
        reads this consumer's pending entries again."""
        import redis.asyncio as redis

        self._closed.clear()
        password = self.config.password.get_secret_value() if self.config.password else None
        client = redis.Redis.from_url(
            self.config.url,
            password=password,
            socket_connect_timeout=self.config.connect_timeout,
            socket_timeout=self.config.block + 10.0,  # above the longest blocking read
            client_name=self.consumer,
            protocol=2,  # every Redis speaks RESP2, and redis-py parses it faster; `?protocol=3` in the URL wins
            decode_responses=True,  # in hiredis, in C: entries arrive as the str dicts an event holds
            encoding_errors=ENCODING_ERRORS,  # bytes that are not UTF-8 survive, to be found (events.split_binary)
        )
        self.client = client
        await client.ping()
        for lane in self._lanes.values():
            await lane.ensure_group()
            lane.reset()
        self.context.log.info(
            "reading %s as %s/%s",
            ", ".join(f"{self.where}/{name}" for name in self._lanes),
            self.group,
            self.consumer,
            extra=self._log_fields(),
        )

    async def lanes(self) -> AsyncIterator[StreamLane]:
        """A lane per stream, until the source closes."""
        for lane in self._lanes.values():
            yield lane
        await self._closed.wait()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The event: `{"Records": [...]}`, one per stream entry."""
        return {"Records": [r.payload for r in records]}

    def filter_view(self, record: Record) -> dict[str, Any]:
        """What filters see of an entry: its metadata, with its fields under `data` (values parsed as JSON when they
        are)."""
        return filter_view(record.payload)

    async def lag(self) -> dict[str, Lag]:
        """Per stream: the group's `lag` (entries not delivered to it yet: Redis 7's XINFO GROUPS) as the backlog,
        and the age of its oldest entry not acknowledged (the oldest pending one, or the first not delivered), from
        the time in its id. One round trip per stream, and an XRANGE of one entry when some are not delivered."""
        client = self.client
        if client is None or self._closed.is_set():
            return {}
        out: dict[str, Lag] = {}
        now_ms = time.time() * 1000
        for name in self._lanes:
            async with client.pipeline(transaction=False) as pipe:
                pipe.xinfo_groups(name)
                pipe.xpending(name, self.group)
                groups, pending = await pipe.execute()
            group = next((g for g in groups if g.get("name") == self.group), None)
            if group is None:
                continue
            waiting = group.get("lag")
            oldest = [pending["min"]] if pending and pending.get("min") else []
            if waiting:
                first = await client.xrange(name, min=f"({group['last-delivered-id']}", count=1)
                oldest += [first[0][0]] if first else []
            times = [int(str(entry).split("-", 1)[0]) for entry in oldest]
            age = max(0.0, (now_ms - min(times)) / 1000) if times else 0.0
            out[name] = Lag(backlog=None if waiting is None else int(waiting), oldest_message_age_s=round(age, 3))
        return out

    async def close(self) -> None:
        """Drop what was read ahead (it stays pending and is read again) and close the client."""
        self._closed.set()
        for lane in self._lanes.values():
            lane.drop_read_ahead()
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()


class StreamLane:
    """One stream. Entries in flight in this process are never delivered twice at once, even if claimed."""

    ordered = False

    def __init__(self, source: RedisStreamsSource, stream: str) -> None:
        self.source = source
        self.stream = stream
        self.key = stream
        self.arn = f"{source.where}/{stream}"
        self._reading = f"reading lane {self.key}"  # as the mapping names it: a read that succeeds clears its failure
        self._bound = source.config.block + STALL_GRACE
        # entry ids read and not settled yet; kept across
        # reopens, as batches may still run while the source reconnects
        self.in_flight: set[Hashable] = set()
        self._history = True
        self._next_claim = 0.0
        self._cursor = "0-0"
        self._ahead: deque[asyncio.Future[Any]] = deque()
        """The next XREADGROUPs, sent while the batches read before are shaped and dispatched (`_read_ahead`)."""

    def reset(self) -> None:
        """After (re)opening: our own pending entries first, then claim what idles, then new entries."""
        self.drop_read_ahead()
        self._history = True
        self._next_claim = 0.0
        self._cursor = "0-0"

    def drop_read_ahead(self) -> None:
        """Cancel a read-ahead. Entries it was handed are pending for this consumer name: they are claimed again
        after claim_idle_time, like those of a consumer that died."""
        while self._ahead:
            ahead = self._ahead.popleft()
            ahead.cancel()
            ahead.add_done_callback(_retrieve)

    async def ensure_group(self) -> None:
        """Create the consumer group at the starting position (and the stream if missing); an existing group keeps
        its position."""
        from redis.exceptions import ResponseError

        start = STARTING_IDS[self.source.config.starting_position]
        try:
            await self.source.client.xgroup_create(self.stream, self.source.group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @property
    def _claim_every(self) -> float:
        return min(max(self.source.config.claim_idle_time / 2, 0.05), 5.0)

    # ---- Lane ------------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Own pending entries, then claimed idle ones, then new ones (blocking until one is there, or timeout)."""
        from redis.exceptions import ResponseError

        deadline = None if timeout is None else time.monotonic() + timeout
        recreated = False
        while True:
            if self.source._closed.is_set() or self.source.client is None:
                raise LaneEnded(self.key)
            if cancelling():  # redis-py's retry absorbed the cancellation (hub.backoff.cancelling)
                raise asyncio.CancelledError
            try:
                # each call blocks at most `block`: one that takes longer is a server that does not answer
                records = await self.source.context.health.watch(
                    self._reading, self._bound, self._read_once(limit, deadline)
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc) or recreated:
                    raise
                # the stream or the group was deleted under us: create it again, as at open
                await self.ensure_group()
                recreated = True
                continue
            if records or (deadline is not None and time.monotonic() >= deadline):
                return records

    async def _read_once(self, limit: int, deadline: float | None) -> list[Record]:
        if self._history:
            records = await self._read_history(limit)
            if records:
                return records
        now = time.monotonic()
        if now >= self._next_claim:
            records = await self._claim(limit)
            if records:
                return records
            now = time.monotonic()
        while self._ahead:
            entries = _entries(await self._ahead.popleft())  # a read without BLOCK: it answered, or is about to
            if entries:
                self._read_ahead(limit, len(entries))
                return self._records(entries, {})
        wait = min(self.source.config.block, self._next_claim - now)
        if deadline is not None:
            wait = min(wait, deadline - now)
        block_ms = int(wait * 1000)
        entries = _entries(await self._xreadgroup(limit, block_ms if block_ms > 0 else None))
        self._read_ahead(limit, len(entries))
        return self._records(entries, {})

    def _xreadgroup(self, limit: int, block_ms: int | None) -> Any:
        return self.source.client.xreadgroup(
            self.source.group, self.source.consumer, {self.stream: ">"}, count=limit, block=block_ms
        )

    def _read_ahead(self, limit: int, got: int) -> None:
        """After a full read, keep READ_AHEAD more reads in flight, without BLOCK, so that their round trips (and
        Redis's work on them) overlap the hub's work, as a consumer of a backlog wants. Their entries are shaped
        (and become in flight) only when `read` takes them; a read-ahead that finds nothing ends the run of them,
        and the next read blocks as usual."""
        while (
            got >= limit
            and self.source.client is not None
            and len(self._ahead) < READ_AHEAD
            and limit * len(self._ahead) < READ_AHEAD_ENTRIES
        ):
            self._ahead.append(asyncio.ensure_future(self._xreadgroup(limit, None)))

    async def _read_history(self, limit: int) -> list[Record]:
        """Entries pending for this consumer name (read before a restart and not acked), from the oldest."""
        client = self.source.client
        start = "0"
        while True:
            reply = await client.xreadgroup(self.source.group, self.source.consumer, {self.stream: start}, count=limit)
            entries = _entries(reply)
            if not entries:
                self._history = False
                return []
            start = entries[-1][0]
            gone = [entry_id for entry_id, fields in entries if not fields]
            if gone:  # deleted from the stream while pending: nothing left to deliver
                await client.xack(self.stream, self.source.group, *gone)
            fresh = [(i, f) for i, f in entries if f and i not in self.in_flight]
            if fresh:
                return self._records(fresh, await self._delivery_counts([i for i, _ in fresh]))

    async def _claim(self, limit: int) -> list[Record]:
        """XAUTOCLAIM entries idle past `claim_idle_time`: our failed ones and those of dead consumers."""
        client = self.source.client
        idle_ms = int(self.source.config.claim_idle_time * 1000)
        reply = await client.xautoclaim(
            self.stream, self.source.group, self.source.consumer, idle_ms, start_id=self._cursor, count=limit
        )
        cursor, entries = reply[0], reply[1]
        self._cursor = str(cursor)
        more = self._cursor != "0-0"
        self._next_claim = time.monotonic() + (0.0 if more else self._claim_every)
        fresh = [(i, f) for i, f in entries if f and i not in self.in_flight]
        if not fresh:
            return []
        return self._records(fresh, await self._delivery_counts([i for i, _ in fresh]))

    async def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        """How many times Redis has delivered each entry (XPENDING), counting the delivery just made."""
        async with self.source.client.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(self.stream, self.source.group, entry_id, entry_id, 1)
            replies = await pipe.execute()
        counts = {}
        for reply in replies:
            for pending in reply:
                counts[pending["message_id"]] = int(pending["times_delivered"])
        return counts

    def _records(self, entries: list[tuple[str, dict[str, str]]], counts: dict[str, int]) -> list[Record]:
        """Records of entries just delivered to this consumer; `counts` has their delivery counts (default 1).

        The hot path of the connector: one call per entry read, so it is kept lean. Each entry's fields arrive as
        a dict of str, decoded by hiredis (decode_responses), which becomes the record's `data` as it is.
        """
        source = self.source
        group, consumer, region = source.group, source.consumer, source.context.region
        key, stream, arn = self.key, self.stream, self.arn
        received = time.monotonic()
        records: list[Record] = []
        append = records.append
        for entry_id, fields in entries:
            attempt = max(1, counts.get(entry_id, 1)) if counts else 1
            millis, _, _ = entry_id.partition("-")
            data, binary = (fields, None) if is_text(fields) else split_binary(fields)
            payload: dict[str, Any] = {
                "messageId": entry_id,
                "stream": stream,
                "data": data,
                "attributes": {
                    "ApproximateReceiveCount": "1" if attempt == 1 else str(attempt),
                    "SentTimestamp": millis,
                    "ConsumerGroup": group,
                    "Consumer": consumer,
                },
                "eventSource": "redis:stream",
                "eventSourceARN": arn,
                "awsRegion": region,
            }
            if binary:
                payload["binaryData"] = binary
            size = RECORD_OVERHEAD + FIELD_OVERHEAD * len(fields) + sum(map(len, fields.values()))
            append(Record(key, entry_id, payload, int(millis) / 1000.0, size, entry_id, attempt, None, None, received))
        self.in_flight.update([entry_id for entry_id, _ in entries])
        return records

    async def settle(self, outcome: Outcome) -> None:
        """XACK what settled; failed entries stay pending until claimed again after `claim_idle_time`."""
        done = list(map(_position, outcome.settled))
        try:
            if done:
                client = self.source.client
                if client is None:
                    raise ConnectionError("the source is closed; the entries stay pending and are claimed again")
                # as bytes: redis-py encodes a str argument through five isinstance checks, bytes through one
                await client.xack(self.stream, self.source.group, *[entry_id.encode() for entry_id in done])
        finally:
            self.in_flight.difference_update(map(_position, outcome.settled + outcome.failed))
