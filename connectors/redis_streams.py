"""`redis`: Redis streams read through a consumer group, as Lambda reads an SQS queue.

| settle   | meaning for Redis streams                                                                       |
| -------- | ----------------------------------------------------------------------------------------------- |
| success  | XACK: the entry leaves the group's pending list (it stays in the stream; trim it with MAXLEN)    |
| failure  | nothing: the entry stays pending and is claimed again (XAUTOCLAIM) once idle `claim_idle_time`  |
| ordering | none across entries (one unordered lane per stream, up to `max_concurrency` batches in flight)  |

Reads: at open, the entries still pending for this consumer (a restart with the same `consumer_name`) are read
again (XREADGROUP id `0`); then new entries are read with blocking XREADGROUP `>`, and every
`claim_idle_time / 2` (at most 5 s) XAUTOCLAIM takes over entries that have been pending longer than
`claim_idle_time`: a failed entry of ours, or one of a consumer that died. That is the broker's redelivery, and
`claim_idle_time` plays the part of SQS's visibility timeout: keep it above the function's timeout. The delivery
count Redis keeps for each pending entry is the record's attempt (`ApproximateReceiveCount`), which the
dispatcher compares with `max_receive_count`. The event shape is documented in docs/events/redis.md.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Hashable, Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.records import Outcome, Record
from hub.source import ConnectorSpec, LaneEnded, SourceContext
from hub.types import Duration

STARTING_IDS = {"TRIM_HORIZON": "0", "LATEST": "$"}
RECORD_OVERHEAD = 300
"""Bytes a record adds to the event besides its fields: ids, attributes, ARN."""
FIELD_OVERHEAD = 24
"""Bytes a field adds besides its value: its name (short, as field names are), quotes and separators."""


class RedisStreamsConfig(BaseModel):
    """Read one or more Redis streams through a consumer group; each entry is one record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["redis"]
    url: str = Field(
        "redis://localhost:6379/0",
        description="`redis://[user:password@]host:port/db`, `rediss://` for TLS, or `unix:///path?db=0`.",
    )
    password: SecretStr | None = Field(None, description="Password, when it is not in the URL.")
    stream: str | list[str] = Field(description="The stream key, or a list of keys (one lane each).")
    consumer_group: str | None = Field(None, description="Consumer group (created if missing). Default: the mapping.")
    consumer_name: str | None = Field(
        None,
        description="This process's consumer in the group. Default: `hostname-pid`. A fixed name lets a restarted "
        "process read its own pending entries again at once instead of after `claim_idle_time`.",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        "TRIM_HORIZON",
        description="Where a new consumer group starts: every entry in the stream (`0`) or only new ones (`$`). "
        "An existing group keeps its position.",
    )
    block: Duration = Field(5.0, gt=0, le=60, description="Longest wait of one blocking XREADGROUP.")
    claim_idle_time: Duration = Field(
        30.0,
        gt=0,
        description="Entries pending this long (failed, or read by a consumer that died) are claimed and delivered "
        "again, as SQS's visibility timeout does; keep it above the function's timeout.",
    )
    connect_timeout: Duration = Field(5.0, gt=0, description="Longest wait for a connection.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("use redis://host:port/db, rediss://host:port/db or unix:///path/to/socket")
        return value

    @field_validator("stream")
    @classmethod
    def _streams(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or any(not name for name in names) or len(set(names)) != len(names):
            raise ValueError("give one stream key, or a list of distinct, non-empty keys")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> RedisStreamsConfig:
        if self.password is not None and urlsplit(self.url).password:
            raise ValueError("the password is given twice: in `url` and in `password`; keep one")
        return self

    @property
    def streams(self) -> list[str]:
        return [self.stream] if isinstance(self.stream, str) else list(self.stream)


def public_url(url: str) -> str:
    """The URL without credentials or query, as `scheme://host:port/db` (for ARNs and logs)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{host}:{parts.port or 6379}/{db}"


def entry_millis(entry_id: str) -> int:
    """The creation time of a stream entry, from its id `<ms>-<seq>`."""
    try:
        return int(entry_id.partition("-")[0])
    except ValueError:
        return 0


def _text(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _split_binary(fields: dict[bytes, bytes]) -> tuple[dict[str, str], dict[str, str]]:
    """Text fields, and the fields whose values are not UTF-8 (base64-encoded)."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for raw_name, raw_value in fields.items():
        name = raw_name.decode("utf-8", "backslashreplace")
        value = _text(raw_value)
        if value is None:
            binary[name] = base64.b64encode(raw_value).decode("ascii")
        else:
            data[name] = value
    return data, binary


def _parsed(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of an XREADGROUP reply for one stream (RESP2: [[key, entries]]; RESP3: {key: [entries]})."""
    if not reply:
        return []
    if isinstance(reply, dict):
        (value,) = reply.values()
        return list(value[0] if value and isinstance(value[0], list) else value)
    return list(reply[0][1])


class FilterView(Mapping[str, Any]):
    """What filter patterns see: the record's metadata, and `data` with each field parsed as JSON when it is JSON.

    Built on first use, so a mapping without filters never pays for the parsing.
    """

    __slots__ = ("_payload", "_view")

    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload
        self._view: dict[str, Any] | None = None

    def _built(self) -> dict[str, Any]:
        if self._view is None:
            view = {k: v for k, v in self._payload.items() if k not in ("data", "binaryData")}
            view["data"] = {name: _parsed(value) for name, value in self._payload["data"].items()}
            self._view = view
        return self._view

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


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
        for lane in self._lanes.values():
            yield lane
        await self._closed.wait()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        return {"Records": [r.payload for r in records]}

    async def close(self) -> None:
        self._closed.set()
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
        # entry ids (bytes, as Redis returns them and XACK takes them) read and not settled yet; kept across
        # reopens, as batches may still run while the source reconnects
        self.in_flight: set[Hashable] = set()
        self._history = True
        self._next_claim = 0.0
        self._cursor = "0-0"

    def reset(self) -> None:
        """After (re)opening: our own pending entries first, then claim what idles, then new entries."""
        self._history = True
        self._next_claim = 0.0
        self._cursor = "0-0"

    async def ensure_group(self) -> None:
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
            try:
                records = await self._read_once(limit, deadline)
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
        wait = min(self.source.config.block, self._next_claim - now)
        if deadline is not None:
            wait = min(wait, deadline - now)
        block_ms = int(wait * 1000)
        reply = await self.source.client.xreadgroup(
            self.source.group,
            self.source.consumer,
            {self.stream: ">"},
            count=limit,
            block=block_ms if block_ms > 0 else None,
        )
        return self._records(_entries(reply), {})

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
            start = entries[-1][0].decode()
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
        self._cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        more = self._cursor != "0-0"
        self._next_claim = time.monotonic() + (0.0 if more else self._claim_every)
        fresh = [(i, f) for i, f in entries if f and i not in self.in_flight]
        if not fresh:
            return []
        return self._records(fresh, await self._delivery_counts([i for i, _ in fresh]))

    async def _delivery_counts(self, ids: list[bytes]) -> dict[str, int]:
        """How many times Redis has delivered each entry (XPENDING), counting the delivery just made."""
        async with self.source.client.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(self.stream, self.source.group, entry_id, entry_id, 1)
            replies = await pipe.execute()
        counts = {}
        for reply in replies:
            for pending in reply:
                counts[pending["message_id"].decode()] = int(pending["times_delivered"])
        return counts

    def _records(self, entries: list[tuple[bytes, dict[bytes, bytes]]], counts: dict[str, int]) -> list[Record]:
        """Records of entries just delivered to this consumer; `counts` has their delivery counts (default 1).

        The hot path of the connector: one call per entry read, so it is kept lean.
        """
        source = self.source
        group, consumer, region = source.group, source.consumer, source.context.region
        key, stream, arn, in_flight = self.key, self.stream, self.arn, self.in_flight
        records = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            in_flight.add(raw_id)
            attempt = max(1, counts.get(entry_id, 1)) if counts else 1
            millis = entry_millis(entry_id)
            try:
                data = {name.decode(): value.decode() for name, value in fields.items()}
                binary = None
            except UnicodeDecodeError:
                data, binary = _split_binary(fields)
            payload: dict[str, Any] = {
                "messageId": entry_id,
                "stream": stream,
                "data": data,
                "attributes": {
                    "ApproximateReceiveCount": str(attempt),
                    "SentTimestamp": str(millis),
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
            records.append(
                Record(
                    key,
                    raw_id,
                    payload,
                    timestamp=millis / 1000.0,
                    size=size,
                    item_id=entry_id,
                    attempt=attempt,
                    filter_view=FilterView(payload),
                )
            )
        return records

    async def settle(self, outcome: Outcome) -> None:
        """XACK what settled; failed entries stay pending until claimed again after `claim_idle_time`."""
        done = [r.position for r in outcome.settled]
        try:
            if done:
                client = self.source.client
                if client is None:
                    raise ConnectionError("the source is closed; the entries stay pending and are claimed again")
                await client.xack(self.stream, self.source.group, *done)
        finally:
            for record in outcome.settled + outcome.failed:
                self.in_flight.discard(record.position)


def sample_event() -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": "1718000000000-0",
                "stream": "orders",
                "data": {"order_id": "1042", "payload": '{"item":"book","qty":2}'},
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1718000000000",
                    "ConsumerGroup": "orders-mapping",
                    "Consumer": "host-4242",
                },
                "eventSource": "redis:stream",
                "eventSourceARN": "redis://localhost:6379/0/orders",
                "awsRegion": "us-east-1",
            }
        ]
    }


CONNECTOR = ConnectorSpec(
    type="redis",
    config=RedisStreamsConfig,
    build=RedisStreamsSource,
    family="queue",
    summary="Redis streams through a consumer group, delivered like an SQS queue (XACK on success, XAUTOCLAIM).",
    sample_event=sample_event,
    data_key="data",
    defaults={"max_concurrency": 5},
)
