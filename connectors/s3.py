"""`s3`: Amazon S3 (or an S3-compatible store) as S3 event notifications invoke Lambda: each event is one
asynchronous invocation (retries, `maximum_event_age`, then the destination).

| settle   | meaning for S3                                                                                     |
| -------- | -------------------------------------------------------------------------------------------------- |
| success  | notifications: the SQS message that carried the event is deleted; poll: the object's ETag and     |
|          | LastModified are written to the checkpoint store (and the watermark moves): never handled again    |
| failure  | only when the hub stops mid-retry: notifications: the message waits out its visibility timeout;    |
|          | poll: nothing is written, the object is found again by the next listing                            |
| ordering | none (S3 gives none; compare `s3.object.sequencer` per key), up to `max_concurrency` in flight     |

`mode: notifications` reads the SQS queue a bucket sends its event notifications to (a QueueConfiguration).
Each message is one invocation whose event is the message's `{"Records": [...]}` as S3 wrote it; S3's
`s3:TestEvent` messages are deleted without an invocation; an S3 event that came through SNS (not raw
delivery) is unwrapped. A message that is not an S3 event is left alone (with a warning): the queue's redrive
policy deals with it. The message stays invisible while its invocation and retries run (see `connectors/sqs/`).

`mode: poll` is for stores that send no notifications: every `poll_interval` the bucket is listed
(ListObjectsV2 under `prefix`, keys ending with `suffix`) and every new or overwritten object becomes an
`ObjectCreated:Put` record. What was handled is kept in a bounded form:
- the watermark W: a LastModified time before which every object is handled (it moves only past objects
  that have settled, never past one still in flight);
- the identity (`ETag@LastModified`) of each handled object modified after W - `lookback`.
An object is new when its LastModified is after W - `lookback` and its identity is not the one stored for its
key: an overwrite (new ETag or LastModified) is a new event; objects older than the lookback are never listed as
new again, so the state holds only what was modified in the last `lookback`. The lookback covers objects that
show up in a listing later than their LastModified says (a multipart upload is stamped when it began). The
first start of a `LATEST` mapping puts W at the newest object there is (old objects are not events);
`TRIM_HORIZON` handles every object already in the bucket.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import Field, model_validator

from connectors.files import s3_record
from connectors.files import sample_event as files_sample_event
from connectors.sqs import QueueLane, QueueSettings, Receipt, SqsQueue, message_attempt, sent_at
from hub.aws import client
from hub.logs import fields
from hub.records import Outcome, Record
from hub.source import ConnectorSpec, LaneEnded, SourceContext
from hub.types import Duration

QUEUE_ONLY = ("queue_url", "queue_name", "wait_time", "visibility_timeout", "visibility_backoff")
POLL_ONLY = ("bucket", "prefix", "suffix", "poll_interval", "lookback", "starting_position")
WATERMARK = "watermark"


class S3Config(QueueSettings):
    """S3 event notifications: read from the SQS queue a bucket notifies, or by listing the bucket."""

    type: Literal["s3"]
    mode: Literal["notifications", "poll"] = Field(
        "notifications",
        description="`notifications`: read the SQS queue the bucket sends its event notifications to "
        "(`queue_url`/`queue_name`); `poll`: list `bucket` every `poll_interval` (stores without notifications).",
    )
    bucket: str | None = Field(None, description="poll: the bucket to list.")
    prefix: str = Field("", description="poll: only keys that start with this.")
    suffix: str = Field("", description="poll: only keys that end with this (e.g. `.jpg`).")
    poll_interval: Duration = Field(10.0, gt=0, le=3600, description="poll: how often the bucket is listed.")
    lookback: Duration = Field(
        3600.0,
        ge=0,
        le=604800,
        description="poll: how much older than the newest handled object a new object may look and still be "
        "found (multipart uploads carry the time they began). The state kept grows with the objects modified "
        "in this window.",
    )
    starting_position: Literal["LATEST", "TRIM_HORIZON"] = Field(
        "LATEST",
        description="poll, first start only: `LATEST` handles objects written from now on; `TRIM_HORIZON` also "
        "every object already in the bucket.",
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> S3Config:
        if self.mode == "notifications":
            if (self.queue_url is None) == (self.queue_name is None):
                raise ValueError("mode notifications: give exactly one of queue_url and queue_name")
            wrong = [name for name in POLL_ONLY if name in self.model_fields_set]
        else:
            if self.bucket is None:
                raise ValueError("mode poll: give the bucket")
            wrong = [name for name in QUEUE_ONLY if name in self.model_fields_set]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: not used with mode {self.mode}")
        return self


def _records_of(body: str) -> list[Any] | None:
    """The S3 event records of a message body ([] for S3's test event), None if it is no S3 event."""
    try:
        document = json.loads(body)
        if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
            document = json.loads(document["Message"])  # S3 -> SNS -> SQS without raw message delivery
    except (ValueError, TypeError):
        return None
    if not isinstance(document, dict):
        return None
    if document.get("Event") == "s3:TestEvent":
        return []
    records = document.get("Records")
    return records if isinstance(records, list) and records else None


class NotificationSource:
    """mode notifications: one unordered lane over the queue; each message is one record (one invocation)."""

    def __init__(self, config: S3Config, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.queue = SqsQueue(config, context)
        self.lane: QueueLane | None = None
        self._closed = asyncio.Event()
        self._warned: set[str] = set()

    async def open(self) -> None:
        """Open the notification queue and make its one lane (receiving at most 10 messages ahead)."""
        self._closed.clear()
        await self.queue.open()
        self.lane = QueueLane(self.queue, self.convert, prefetch=min(10, self.context.max_in_flight))

    async def lanes(self) -> AsyncIterator[QueueLane]:
        """The queue's one unordered lane, until the source closes."""
        assert self.lane is not None
        yield self.lane
        await self._closed.wait()

    async def convert(self, messages: list[dict[str, Any]]) -> list[Record]:
        """Records of received messages: one per message, its S3 event records as payload (unwrapped from SNS). S3's
        test events are deleted at once, and a message that is not an S3 event is left to the queue's redrive policy.
        """
        out: list[Record] = []
        tests: list[Record] = []
        for message in messages:
            records = _records_of(message.get("Body", ""))
            record = Record(
                lane=self.queue.name,
                position=Receipt(0, message["ReceiptHandle"]),
                payload=records or [],
                timestamp=sent_at(message),
                size=len(message.get("Body", "")),
                item_id=message["MessageId"],
                attempt=message_attempt(message),
                filter_view=records[0] if records else None,
            )
            if records == []:
                tests.append(record)
            elif records is None:
                self.queue.forget(message["MessageId"])
                if message["MessageId"] not in self._warned and len(self._warned) < 1000:
                    self._warned.add(message["MessageId"])
                    self.context.log.warning(
                        "message %s is not an S3 event notification; left to the queue's redrive policy",
                        message["MessageId"],
                        extra=fields(mapping=self.context.mapping, queue=self.queue.name),
                    )
            else:
                out.append(record)
        if tests:
            await self.queue.delete(tests)  # s3:TestEvent: nothing to invoke
        return out

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The S3 event: the message's `Records`, as S3 wrote them."""
        return {"Records": [item for r in records for item in r.payload]}

    async def settle(self, outcome: Outcome) -> None:
        """Delete the messages of what settled; release what failed (it waits out its visibility timeout)."""
        await self.queue.settle(outcome)

    async def close(self) -> None:
        """Make the messages received but not handed on visible again, and close the queue."""
        self._closed.set()
        unread: list[Record] = []
        if self.lane is not None:
            self.lane.closed = True
            unread.extend(self.lane.buffer)
            self.lane.buffer.clear()
        await self.queue.close(unread)


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


def build(config: S3Config, context: SourceContext) -> NotificationSource | PollSource:
    """The source of a mapping: a NotificationSource or a PollSource, as `mode` says."""
    return NotificationSource(config, context) if config.mode == "notifications" else PollSource(config, context)


def sample_event() -> dict[str, Any]:
    """An `ObjectCreated:Put` event as S3 sends it, for `hub events s3`."""
    return files_sample_event("example-notification")


CONNECTOR = ConnectorSpec(
    type="s3",
    config=S3Config,
    build=build,
    family="async",
    summary="S3 event notifications: from the SQS queue a bucket notifies, or by listing a bucket (poll).",
    sample_event=sample_event,
    requires=("aioboto3",),
    extra="aws",
    shares_work=lambda config: config.mode == "notifications",  # a bucket listing is not shared
    leases=lambda config: "source" if config.mode == "poll" else None,
)
