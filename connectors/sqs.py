"""`sqs`: an Amazon SQS queue (standard or FIFO), read as Lambda's SQS event source mapping reads it.

| settle   | meaning for SQS                                                                                  |
| -------- | ------------------------------------------------------------------------------------------------ |
| success  | DeleteMessageBatch with the newest receipt handle (succeeded, given up to the destination, filtered) |
| failure  | the message is left to its visibility timeout, as Lambda leaves it (or, with `visibility_backoff`, |
|          | made visible after a backoff); the queue's redrive policy moves it to its DLQ after maxReceiveCount |
| ordering | standard: none (one unordered lane, `max_concurrency` batches in flight); FIFO: per message group |

Receiving: long polls of at most `wait_time` seconds, cancelled at once when the hub stops (a message SQS had
already handed to a cancelled poll comes back after its visibility timeout). A batch larger than 10 is made of
several receives; follow-up receives do not wait while the queue keeps answering with full pages.

Visibility heartbeat: from the moment a message is received until its batch settles, SQS is asked every third
of the visibility timeout to keep it invisible for another full timeout (ChangeMessageVisibilityBatch), so a
slow function never sees its message handed to another consumer mid-invocation. Receipt handles change at every
receive: the newest one is kept for the heartbeat, the delete and the release. A message received again while
it is still held here is not delivered twice; only its receipt handle is updated.

FIFO queues: one ordered lane per message group (made when a group's first message arrives, ended after
`GROUP_IDLE` seconds without messages), fed by one receiver. SQS itself never hands out a message of a group
while an earlier one of that group is in flight, the heartbeat keeps every received message in flight until it
settles, and each lane runs one batch at a time: that is order per group. While it holds messages, the receiver
polls for at most 1 s at a time, so a group unlocked by our own delete is read again promptly (an emulator
such as moto does not notice the unlock during a long poll that began before it). Groups run concurrently, at most
`max_concurrency` batches at once (a lane holds a slot while it has unsettled records). When a batch reports a
failure, the messages after the first failed one in that group are released too, never deleted, so the group
is redelivered in order (AWS leaves this to the function's partial batch response).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.aws import AwsConnection, client
from hub.logs import fields
from hub.records import Outcome, Record, data_view
from hub.source import ConnectorSpec, LaneEnded, SourceContext
from hub.types import Duration

T = TypeVar("T")
RECEIVE_MAX = 10
"""The most messages one ReceiveMessage (and one *Batch call) takes."""
RECORD_OVERHEAD = 600
"""Bytes a record adds to the event besides its body: ids, receipt handle, attributes, ARN."""
GROUP_IDLE = 10.0
"""Seconds a FIFO message group's lane waits for another message before it ends."""


class QueueSettings(BaseModel):
    """How a queue is read (shared by `sqs` and the `notifications` mode of `s3`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_url: str | None = Field(None, description="The queue's URL (or give `queue_name`).")
    queue_name: str | None = Field(None, description="The queue's name, looked up at start (or give `queue_url`).")
    connection: AwsConnection = Field(
        default_factory=lambda: AwsConnection.model_validate({}),
        description="Where the AWS API is and the credentials to use.",
    )
    wait_time: Duration = Field(
        20.0, ge=1, le=20, description="Long polling: how long one ReceiveMessage waits for messages (1s to 20s)."
    )
    visibility_timeout: Duration | None = Field(
        None,
        ge=1,
        le=43200,
        description="The visibility timeout asked for when receiving and when extending it. Default: the queue's.",
    )
    visibility_backoff: Duration | None = Field(
        None,
        ge=0,
        le=43200,
        description="A failed message becomes visible again after this x 2^(receives - 1), at most the visibility "
        "timeout (0: at once). Default: it waits out its visibility timeout, as Lambda lets it.",
    )


class SqsConfig(QueueSettings):
    """Read an SQS queue as a Lambda event source mapping does (standard or FIFO)."""

    type: Literal["sqs"]

    @model_validator(mode="after")
    def _one_queue(self) -> SqsConfig:
        if (self.queue_url is None) == (self.queue_name is None):
            raise ValueError("give exactly one of queue_url and queue_name")
        return self


@dataclass(frozen=True, slots=True)
class Receipt:
    """A record's position: the order it was received in (within this process) and its receipt handle then."""

    serial: int
    handle: str


def receipt(record: Record) -> Receipt:
    assert isinstance(record.position, Receipt)
    return record.position


@dataclass(slots=True)
class Held:
    """A message received and not settled yet: its newest receipt handle and when to extend its visibility."""

    receipt: str
    attempt: int
    due: float


def _b64(value: Any) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode("ascii")


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = _b64(value["BinaryValue"])
    out["stringListValues"] = list(value.get("StringListValues") or [])
    out["binaryListValues"] = [_b64(v) for v in value.get("BinaryListValues") or []]
    out["dataType"] = value.get("DataType", "String")
    return out


def sqs_record(message: dict[str, Any], *, arn: str, region: str) -> dict[str, Any]:
    """One `Records[]` entry of Lambda's SQS event, from a ReceiveMessage answer's message."""
    body = message.get("Body", "")
    out: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {k: _attribute(v) for k, v in (message.get("MessageAttributes") or {}).items()},
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
    }
    if message.get("MD5OfMessageAttributes"):
        out["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    out.update(eventSource="aws:sqs", eventSourceARN=arn, awsRegion=region)
    return out


def message_attempt(message: dict[str, Any]) -> int:
    return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", "1"))


def sent_at(message: dict[str, Any]) -> float:
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    return int(sent) / 1000 if sent else time.time()


def _failures(answers: Sequence[Any]) -> list[dict[str, Any]]:
    return [failure for answer in answers for failure in (answer.get("Failed") or [])]


class SqsQueue:
    """One queue as the connectors use it: receive, delete, release, and the heartbeat of held messages."""

    def __init__(self, settings: QueueSettings, context: SourceContext) -> None:
        self.settings = settings
        self.context = context
        self.url = settings.queue_url or ""
        self.arn = ""
        self.region = settings.connection.region or context.region
        self.fifo = False
        self.visibility = 30
        self.held: dict[str, Held] = {}
        self.client: Any = None
        self._stack: AsyncExitStack | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # orders heartbeat extensions and releases of the same message
        self._failing = False

    @property
    def name(self) -> str:
        return self.arn.rsplit(":", 1)[-1] or self.url

    @property
    def beat(self) -> float:
        return max(0.2, self.visibility / 3)

    def log(self, level: int, message: str, *args: Any) -> None:
        self.context.log.log(level, message, *args, extra=fields(mapping=self.context.mapping, queue=self.name))

    async def open(self) -> None:
        stack = AsyncExitStack()
        try:
            self.client = await stack.enter_async_context(client(self.settings.connection, "sqs", self.region))
            if not self.url:
                self.url = str((await self.client.get_queue_url(QueueName=self.settings.queue_name))["QueueUrl"])
            names = ["QueueArn", "VisibilityTimeout", "FifoQueue"]
            attributes = (await self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=names))["Attributes"]
        except BaseException:
            await stack.aclose()
            self.client = None
            raise
        self._stack = stack
        self.arn = attributes["QueueArn"]
        self.region = self.arn.split(":")[3] or self.region
        self.fifo = attributes.get("FifoQueue") == "true" or self.url.endswith(".fifo")
        self.visibility = int(self.settings.visibility_timeout or int(attributes.get("VisibilityTimeout", 30)))
        if self.visibility < 3:
            self.log(30, "visibility timeout %ss: messages may be handed out twice; use 3s or more", self.visibility)
        self._heartbeat = asyncio.ensure_future(self._keep_invisible())

    async def close(self, unread: Sequence[Record] = ()) -> None:
        """Stop the heartbeat and make `unread` (received, never handed to the function) visible at once.
        Messages still in flight keep their entries, so a batch that settles after a reopen still finds them."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if unread and self.client is not None:
            try:
                await asyncio.wait_for(self.release(unread, delay=0), 5)
            except Exception as exc:
                self.log(30, "could not release %d unread messages: %s", len(unread), exc)
        stack, self._stack, self.client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # ---- receiving -------------------------------------------------------------------------------------------

    async def receive(self, limit: int, wait: int) -> list[dict[str, Any]]:
        """Up to `limit` (≤ 10) new messages, waiting at most `wait` seconds; each is held from now on."""
        if self.client is None:
            raise RuntimeError(f"the queue {self.name} is closed")
        kwargs: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max(1, min(RECEIVE_MAX, limit)),
            "WaitTimeSeconds": wait,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self.settings.visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = self.visibility
        answer = await self.client.receive_message(**kwargs)
        due = time.monotonic() + self.beat
        fresh = []
        for message in answer.get("Messages") or []:
            attempt = message_attempt(message)
            held = self.held.get(message["MessageId"])
            if held is not None:  # its visibility lapsed while we hold it: keep one delivery, use the new handle
                held.receipt, held.attempt, held.due = message["ReceiptHandle"], attempt, due
                self.log(10, "message %s received again while in flight here", message["MessageId"])
                continue
            self.held[message["MessageId"]] = Held(message["ReceiptHandle"], attempt, due)
            fresh.append(message)
        return fresh

    def forget(self, message_id: str) -> None:
        """Stop holding a message without settling it: it comes back after its visibility timeout."""
        self.held.pop(message_id, None)

    # ---- settling --------------------------------------------------------------------------------------------

    async def settle(self, outcome: Outcome, held_back: Sequence[Record] = ()) -> None:
        """Delete what settled (except `held_back`), release what failed (and `held_back`)."""
        keep = {id(r) for r in held_back}
        done = [r for r in outcome.settled if id(r) not in keep]
        results = await asyncio.gather(
            self.delete(done), self.release([*outcome.failed, *held_back]), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def delete(self, records: Sequence[Record]) -> None:
        """DeleteMessageBatch, with the newest receipt handles. Raises if SQS refused any."""
        handles = [self._take(r)[0] for r in records]
        if not handles:
            return
        if self.client is None:
            raise RuntimeError(f"the queue {self.name} is closed")
        answers = await asyncio.gather(
            *(
                self.client.delete_message_batch(
                    QueueUrl=self.url, Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]
                )
                for chunk in _chunks(handles)
            )
        )
        failed = _failures(answers)
        if failed:
            first = failed[0]
            raise RuntimeError(
                f"SQS did not delete {len(failed)} messages: {first.get('Code')}: {first.get('Message')}"
            )

    async def release(self, records: Sequence[Record], delay: int | None = None) -> None:
        """Stop holding failed messages. With `delay` or `visibility_backoff` they become visible after it;
        otherwise they wait out their visibility timeout."""
        entries = []
        for record in records:
            receipt, attempt = self._take(record)
            seconds = delay if delay is not None else self._backoff(attempt)
            if seconds is not None:
                entries.append((receipt, seconds))
        if entries and self.client is not None:
            async with self._lock:
                answers = await asyncio.gather(*(self._change(chunk) for chunk in _chunks(entries)))
            failed = _failures(answers)
            if failed:
                self.log(30, "%d failed messages could not be made visible again: %s", len(failed), failed[0])

    def _take(self, record: Record) -> tuple[str, int]:
        held = self.held.pop(record.item_id, None)
        if held is None:  # released by a close, or settled twice: the handle it was received with
            return receipt(record).handle, record.attempt
        return held.receipt, held.attempt

    def _backoff(self, attempt: int) -> int | None:
        base = self.settings.visibility_backoff
        if base is None:
            return None
        return int(min(self.visibility, base * 2 ** max(0, attempt - 1)))

    async def _change(self, entries: Sequence[tuple[str, int]]) -> Any:
        return await self.client.change_message_visibility_batch(
            QueueUrl=self.url,
            Entries=[{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": s} for i, (h, s) in enumerate(entries)],
        )

    # ---- heartbeat -------------------------------------------------------------------------------------------

    async def _keep_invisible(self) -> None:
        """Extend the visibility of every held message a third of a timeout before it would lapse."""
        while True:
            now = time.monotonic()
            soonest = min((h.due for h in self.held.values()), default=now + self.beat)
            if soonest > now:
                await asyncio.sleep(min(soonest - now, self.beat))
                continue
            async with self._lock:
                due = [(mid, h) for mid, h in self.held.items() if h.due <= now]
                for _, held in due:
                    held.due = now + self.beat
                try:
                    answers = await asyncio.gather(
                        *(self._change([(h.receipt, self.visibility) for _, h in chunk]) for chunk in _chunks(due))
                    )
                except Exception as exc:
                    if not self._failing:
                        self.log(40, "cannot extend the visibility of %d messages: %s; retrying", len(due), exc)
                    self._failing = True
                    for _, held in due:  # try again soon, there is a third of a timeout left
                        held.due = now + min(1.0, self.beat / 4)
                    continue
            if self._failing:
                self.log(20, "extending visibility works again")
                self._failing = False
            for answer, chunk in zip(answers, _chunks(due), strict=True):
                for failure in answer.get("Failed") or []:
                    mid, held = chunk[int(failure["Id"])]
                    if self.held.get(mid) is held:  # its handle is stale: no use asking again until a new receive
                        held.due = math.inf
                        self.log(30, "message %s may be delivered again: %s", mid, failure.get("Code"))


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + RECEIVE_MAX] for i in range(0, len(items), RECEIVE_MAX)]


class QueueLane:
    """The lane of a standard queue: receives on demand, up to `limit` records per read."""

    ordered = False

    def __init__(
        self,
        queue: SqsQueue,
        convert: Callable[[list[dict[str, Any]]], Awaitable[list[Record]]],
        prefetch: int = 1,
    ) -> None:
        self.key = queue.name
        self.queue = queue
        self.convert = convert
        self.prefetch = prefetch
        self.closed = False
        self.buffer: deque[Record] = deque()

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.buffer:
            if self.closed:
                raise LaneEnded(self.key)
            wait = self.queue.settings.wait_time
            if deadline is not None:
                wait = min(wait, math.ceil(deadline - time.monotonic() - 0.05))
            messages = await self.queue.receive(max(limit, self.prefetch), max(0, int(wait)))
            self.buffer.extend(await self.convert(messages))
            while len(messages) == RECEIVE_MAX and len(self.buffer) < limit:  # more are there: no need to wait
                messages = await self.queue.receive(limit - len(self.buffer), 0)
                self.buffer.extend(await self.convert(messages))
            if not self.buffer and deadline is not None and time.monotonic() >= deadline:
                return []
        return [self.buffer.popleft() for _ in range(min(limit, len(self.buffer)))]

    async def settle(self, outcome: Outcome) -> None:
        await self.queue.settle(outcome)


class GroupLane:
    """One message group of a FIFO queue: an ordered lane fed by the source's receiver."""

    ordered = True

    def __init__(self, source: SqsSource, group: str) -> None:
        self.key = group
        self.source = source
        self.buffer: deque[Record] = deque()
        self.arrived = asyncio.Event()
        self.unsettled = 0
        self.slot: asyncio.Semaphore | None = None  # the source's slots this lane holds one of

    def push(self, record: Record) -> None:
        self.buffer.append(record)
        self.arrived.set()

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.buffer:
            if self.source.closed:
                raise LaneEnded(self.key)
            self.arrived.clear()
            wait = GROUP_IDLE if deadline is None else deadline - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.0, wait))
            if self.buffer:
                break
            if deadline is None and not self.unsettled:
                self.source.end_group(self)
                raise LaneEnded(self.key)
            if deadline is not None and time.monotonic() >= deadline:
                return []
        if self.slot is None:  # one of the `max_concurrency` slots, held until everything handed out has settled
            slots = self.source.slots
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(slots.acquire(), left)
            except TimeoutError:
                return []
            self.slot = slots
        out = [self.buffer.popleft() for _ in range(min(limit, len(self.buffer)))]
        self.unsettled += len(out)
        return out

    async def settle(self, outcome: Outcome) -> None:
        self.unsettled -= len(outcome)
        try:
            await self.source.queue.settle(outcome, held_back=_after_first_failure(outcome))
        finally:
            slots = self.slot
            if not self.unsettled and slots is not None:
                self.slot = None
                slots.release()
            self.source.room.set()


def _after_first_failure(outcome: Outcome) -> list[Record]:
    """Succeeded records received after the group's first failed one: released with it to keep group order."""
    if not outcome.failed:
        return []
    first = min(receipt(r).serial for r in outcome.failed)
    return [r for r in outcome.succeeded if receipt(r).serial > first]


class SqsSource:
    def __init__(self, config: QueueSettings, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.queue = SqsQueue(config, context)
        self.closed = False
        self.lane: QueueLane | None = None
        self.groups: dict[str, GroupLane] = {}
        self.slots = asyncio.Semaphore(max(1, context.max_in_flight))
        self.room = asyncio.Event()
        self._closed = asyncio.Event()
        self._serial = itertools.count()

    async def open(self) -> None:
        self.closed = False
        self._closed.clear()
        await self.queue.open()
        self.lane = QueueLane(self.queue, self.convert)
        self.groups = {}
        self.slots = asyncio.Semaphore(max(1, self.context.max_in_flight))

    async def lanes(self) -> AsyncIterator[QueueLane | GroupLane]:
        if not self.queue.fifo:
            assert self.lane is not None
            yield self.lane
            await self._closed.wait()
            return
        # the receiver of a FIFO queue: it holds at most `max_concurrency` batches of 10 besides what is in flight
        cap = RECEIVE_MAX * (max(1, self.context.max_in_flight) + 1)
        while not self.closed:
            if len(self.queue.held) >= cap:
                self.room.clear()
                await self._unless_closed(self.room.wait())
                continue
            # while messages are in flight here, settling them unlocks their groups: ask again soon
            wait = int(self.config.wait_time) if not self.queue.held else 1
            messages = await self._unless_closed(self.queue.receive(RECEIVE_MAX, wait))
            for record in await self.convert(messages or []):
                group = str(record.order_key)
                lane = self.groups.get(group)
                if lane is None:
                    lane = self.groups[group] = GroupLane(self, group)
                    yield lane
                lane.push(record)

    def end_group(self, lane: GroupLane) -> None:
        if self.groups.get(lane.key) is lane:
            del self.groups[lane.key]

    async def _unless_closed(self, coro: Coroutine[Any, Any, T]) -> T | None:
        task = asyncio.ensure_future(coro)
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return task.result() if not task.cancelled() else None

    async def convert(self, messages: list[dict[str, Any]]) -> list[Record]:
        return [self.record(m) for m in messages]

    def record(self, message: dict[str, Any]) -> Record:
        payload = sqs_record(message, arn=self.queue.arn, region=self.queue.region)
        body = payload["body"]
        metadata = {k: v for k, v in payload.items() if k != "body"}
        group = payload["attributes"].get("MessageGroupId")
        return Record(
            lane=group if self.queue.fifo and group is not None else self.queue.name,
            position=Receipt(next(self._serial), payload["receiptHandle"]),
            payload=payload,
            timestamp=sent_at(message),
            size=len(body) + RECORD_OVERHEAD + len(str(payload["messageAttributes"])),
            item_id=payload["messageId"],
            attempt=message_attempt(message),
            filter_view=data_view(metadata, "body", body),
            order_key=group,
        )

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        return {"Records": [r.payload for r in records]}

    async def close(self) -> None:
        self.closed = True
        self._closed.set()
        unread: list[Record] = []
        if self.lane is not None:
            self.lane.closed = True
            unread.extend(self.lane.buffer)
            self.lane.buffer.clear()
        for lane in self.groups.values():
            unread.extend(lane.buffer)
            lane.buffer.clear()
            lane.arrived.set()
        self.groups = {}
        await self.queue.close(unread)


def sample_event() -> dict[str, Any]:
    message = {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "Body": '{"City": "Seattle"}',
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "MessageAttributes": {"Attribute1": {"StringValue": "AttributeValue1", "DataType": "String"}},
        "MD5OfMessageAttributes": "582c92c5c5b6ac403040a4f3ab3115c9",
    }
    return {"Records": [sqs_record(message, arn="arn:aws:sqs:us-east-1:123456789012:my-queue", region="us-east-1")]}


CONNECTOR = ConnectorSpec(
    type="sqs",
    config=SqsConfig,
    build=SqsSource,
    family="queue",
    summary="An Amazon SQS queue (standard or FIFO), as Lambda's SQS event source mapping reads it.",
    sample_event=sample_event,
    data_key="body",
    defaults={"batch_size": 10, "maximum_batching_window": 0.0, "max_concurrency": 5},
)
