"""`mode: poll`: a bucket listed every `poll_interval`, new and overwritten objects as `ObjectCreated:Put`
records, with a watermark and the identities of recent objects in the store (see the package docstring)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any, cast

from connectors.files import s3_record
from connectors.s3.config import S3Config
from hub.aws import client
from hub.records import Outcome, Record
from hub.source import LaneEnded, SourceContext

WATERMARK = "watermark"


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _identity(obj: dict[str, Any]) -> tuple[str, float]:
    """An object's identity `ETag@LastModified(ms)`, and its LastModified."""
    modified = _epoch(obj["LastModified"])
    return f"{str(obj.get('ETag', '')).strip(chr(34))}@{round(modified * 1000)}", modified


def _modified(identity: str) -> float:
    return int(identity.rsplit("@", 1)[-1]) / 1000


def _position(record: Record) -> tuple[str, str, float]:
    """A poll record's position: its key, identity and LastModified."""
    return cast(tuple[str, str, float], record.position)


class PollSource:
    """mode poll: one unordered lane, the bucket (under the prefix). See the module docstring for the state."""

    ordered = False

    def __init__(self, config: S3Config, context: SourceContext) -> None:
        assert config.bucket is not None
        self.config = config
        self.context = context
        self.bucket = config.bucket
        self.key = f"s3://{self.bucket}/{config.prefix}"
        self.region = config.connection.region or context.region
        self.scope = context.scope("s3", self.bucket, config.prefix)
        self.mark_scope = context.scope("s3-watermark", self.bucket, config.prefix)
        self.client: Any = None
        self.watermark: float | None = None
        self.known: dict[str, str] = {}  # key -> identity of the handled object
        self.in_flight: dict[str, tuple[str, float]] = {}  # key -> (identity, LastModified)
        self.newest = 0.0  # newest LastModified that settled
        self.buffer: deque[Record] = deque()
        self.closed = False
        self._stack: AsyncExitStack | None = None
        self._next_poll = 0.0
        self._closed = asyncio.Event()

    async def open(self) -> None:
        """Connect, load the handled objects and the watermark from the store (on the first start of a LATEST
        mapping, put the watermark at the newest object)."""
        self.closed = False
        self._closed.clear()
        stack = AsyncExitStack()
        try:
            self.client = await stack.enter_async_context(client(self.config.connection, "s3", self.region))
            self.known = await self.context.store.get_all(self.scope)
            mark = await self.context.store.get(self.mark_scope, WATERMARK)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self.watermark = float(mark) if mark is not None else None
        self.buffer.clear()
        self.in_flight.clear()
        self._next_poll = 0.0

    async def lanes(self) -> AsyncIterator[PollSource]:
        """Its one unordered lane (itself), until it closes."""
        yield self
        await self._closed.wait()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The S3 event of `ObjectCreated:Put` records, one per object."""
        return {"Records": [r.payload for r in records]}

    async def close(self) -> None:
        """Forget what was listed but not handed on (the next listing finds it again) and close the client."""
        self.closed = True
        self._closed.set()
        self.buffer.clear()
        stack, self._stack, self.client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # ---- Lane ------------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Records of new or overwritten objects: lists the bucket every `poll_interval` while it has none buffered;
        [] once `timeout` passed; LaneEnded once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.buffer:
            if self.closed:
                raise LaneEnded(self.key)
            now = time.monotonic()
            if now >= self._next_poll:
                self._next_poll = now + self.config.poll_interval
                await self.poll()
                continue
            wait = self._next_poll - now
            if deadline is not None:
                if now >= deadline:
                    return []
                wait = min(wait, deadline - now)
            await asyncio.sleep(wait)  # the poll interval: S3 has no way to wait for objects
        return [self.buffer.popleft() for _ in range(min(limit, len(self.buffer)))]

    async def settle(self, outcome: Outcome) -> None:
        """Write the identity of every settled object, and move the watermark past the objects that settled, never
        past one still in flight. Failed objects are found again by a later listing."""
        updates: dict[str, str | None] = {}
        for record in outcome.settled:
            key, identity, modified = _position(record)
            self.newest = max(self.newest, modified)
            if key in self.known and _modified(self.known[key]) > modified:
                continue  # a newer version of the object settled first
            updates[key] = identity
            self.known[key] = identity
        for record in outcome.settled + outcome.failed:
            key, identity, _ = _position(record)
            if self.in_flight.get(key, ("",))[0] == identity:
                del self.in_flight[key]
        if updates:
            await self.context.store.put_many(self.scope, updates)  # identities before the watermark
        if self.newest:
            unsettled = min((modified for _, modified in self.in_flight.values()), default=self.newest)
            mark = min(self.newest, unsettled)
            if self.watermark is None or mark > self.watermark:
                self.watermark = mark
                await self.context.store.put(self.mark_scope, WATERMARK, repr(mark))

    # ---- listing ---------------------------------------------------------------------------------------------

    async def _list(self) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.config.prefix}
        while True:
            answer = await self.client.list_objects_v2(**kwargs)
            objects.extend(o for o in answer.get("Contents") or [] if o["Key"].endswith(self.config.suffix))
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return objects
            kwargs["ContinuationToken"] = token

    async def poll(self) -> None:
        """List the bucket; queue a record for every new or overwritten object; forget what aged out."""
        if self.client is None:
            raise RuntimeError("the source is closed")
        objects = await self._list()
        if self.watermark is None:
            await self._first_start(objects)
        assert self.watermark is not None
        oldest = self.watermark - self.config.lookback
        found = []
        for obj in objects:
            identity, modified = _identity(obj)
            key = obj["Key"]
            if modified < oldest or self.known.get(key) == identity:
                continue
            if self.in_flight.get(key, ("",))[0] == identity:
                continue
            found.append((modified, key, identity, obj))
        for modified, key, identity, obj in sorted(found, key=lambda item: (item[0], item[1])):
            self.in_flight[key] = (identity, modified)
            self.buffer.append(self._record(key, identity, modified, obj))
        stale = {k: None for k, v in self.known.items() if _modified(v) < oldest}
        if stale:
            await self.context.store.put_many(self.scope, stale)
            for key in stale:
                del self.known[key]

    async def _first_start(self, objects: list[dict[str, Any]]) -> None:
        if self.config.starting_position == "TRIM_HORIZON" or not objects:
            self.watermark = 0.0
        else:
            self.watermark = max(_epoch(o["LastModified"]) for o in objects)
            oldest = self.watermark - self.config.lookback
            for obj in objects:
                identity, modified = _identity(obj)
                if modified >= oldest:
                    self.known[obj["Key"]] = identity
            await self.context.store.put_many(self.scope, dict(self.known))
        await self.context.store.put(self.mark_scope, WATERMARK, repr(self.watermark))

    def _record(self, key: str, identity: str, modified: float, obj: dict[str, Any]) -> Record:
        etag = identity.rsplit("@", 1)[0]
        payload = s3_record(
            event_name="ObjectCreated:Put",
            bucket=self.bucket,
            key=key,
            event_time=modified,
            region=self.region,
            configuration_id=self.context.mapping,
            sequencer=f"{round(modified * 1e9):016X}",
            size=int(obj.get("Size", 0)),
            etag=etag,
        )
        # the event's age counts from when it was found: an old object listed for the first time is a new event
        return Record(self.key, (key, identity, modified), payload, timestamp=time.time(), size=1024, item_id=key)
