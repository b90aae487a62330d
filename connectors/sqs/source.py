"""The `sqs` source: one unordered lane for a standard queue, one ordered lane per message group of a FIFO queue
(see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from connectors.sqs.config import QueueSettings
from connectors.sqs.events import message_attempt, sent_at, sqs_record, trace_context
from connectors.sqs.queue import RECEIVE_MAX, Receipt, SqsQueue, receipt
from hub.records import Lag, Outcome, Record, data_view
from hub.source import LaneEnded, SourceContext

T = TypeVar("T")
RECORD_OVERHEAD = 600
"""Bytes a record adds to the event besides its body: ids, receipt handle, attributes, ARN."""
GROUP_IDLE = 10.0
"""Seconds a FIFO message group's lane waits for another message before it ends."""


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
        """Up to `limit` records: buffered ones first, else a ReceiveMessage long poll (at most `wait_time`, bounded
        by `timeout`); LaneEnded once the source closed."""
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
        """Delete what settled, release what failed (see SqsQueue.settle)."""
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
        """Add a received message of this group, in the order the queue gave it."""
        self.buffer.append(record)
        self.arrived.set()

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """The group's buffered messages, in order; LaneEnded once the source closed or the group stayed idle for
        GROUP_IDLE seconds."""
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
        """Delete what settled; release what failed with every message of the group received after it, so that the
        group's order holds when they come back. Frees the group's slot once nothing of it is in flight."""
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
    """An SQS queue: one unordered lane for a standard queue; for a FIFO queue, one ordered lane per message group,
    fed by one receiver that holds back at most `max_concurrency` batches besides what is in flight."""

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
        self._oldest_seen = math.inf
        """The oldest SentTimestamp among the messages received since the last `lag()`."""
        self._oldest: float | None = None
        """The SentTimestamp `lag()` measures the oldest message's age from."""

    async def open(self) -> None:
        """Open the queue (its URL, ARN, visibility timeout and kind)."""
        self.closed = False
        self._closed.clear()
        await self.queue.open()
        self.lane = QueueLane(self.queue, self.convert)
        self.groups = {}
        self.slots = asyncio.Semaphore(max(1, self.context.max_in_flight))

    async def lanes(self) -> AsyncIterator[QueueLane | GroupLane]:
        """A standard queue's one lane; or a lane per message group of a FIFO queue, yielded when its first message
        arrives. Ends when the source closes."""
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
        """Forget an idle group's lane (a later message of the group makes a new one)."""
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
        """Records of received messages."""
        return [self.record(m) for m in messages]

    def record(self, message: dict[str, Any]) -> Record:
        """The record of one message: its SQS event record as payload, its receipt as position, its receive count as
        attempt, and (FIFO) its group as lane and order key."""
        payload = sqs_record(message, arn=self.queue.arn, region=self.queue.region)
        sent = sent_at(message)
        if sent < self._oldest_seen:
            self._oldest_seen = sent
        body = payload["body"]
        metadata = {k: v for k, v in payload.items() if k != "body"}
        group = payload["attributes"].get("MessageGroupId")
        return Record(
            lane=group if self.queue.fifo and group is not None else self.queue.name,
            position=Receipt(next(self._serial), payload["receiptHandle"]),
            payload=payload,
            timestamp=sent,
            size=len(body) + RECORD_OVERHEAD + len(str(payload["messageAttributes"])),
            item_id=payload["messageId"],
            attempt=message_attempt(message),
            filter_view=data_view(metadata, "body", body),
            order_key=group,
        )

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The SQS event: `{"Records": [...]}`."""
        return {"Records": [r.payload for r in records]}

    def trace_context(self, record: Record) -> dict[str, str] | None:
        """The message's trace: its `AWSTraceHeader` (X-Ray's format, converted), else a `traceparent` message
        attribute (as OpenTelemetry's SQS instrumentation sends it)."""
        return trace_context(record.payload)

    async def lag(self) -> dict[str, Lag]:
        """The queue's backlog (ApproximateNumberOfMessages, one GetQueueAttributes) and the age of its oldest
        message, estimated from what the hub receives: CloudWatch's ApproximateAgeOfOldestMessage is not an
        attribute a client can read. It is the age of the oldest message received since the previous call; when
        none was, that of the last one measured (it keeps growing while the queue holds messages); 0 once the queue
        holds none, visible or in flight. Keyed by the queue's name (a FIFO queue's lanes are its groups)."""
        client = self.queue.client
        if client is None or self.closed:
            return {}
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = (await client.get_queue_attributes(QueueUrl=self.queue.url, AttributeNames=names))["Attributes"]
        visible = int(attributes.get("ApproximateNumberOfMessages", 0))
        held = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
        seen, self._oldest_seen = self._oldest_seen, math.inf
        if not visible and not held:
            self._oldest = None
        elif seen < math.inf:
            self._oldest = seen
        age = 0.0 if self._oldest is None else max(0.0, round(time.time() - self._oldest, 3))
        if self._oldest is None and (visible or held):
            return {self.queue.name: Lag(backlog=visible)}  # nothing received yet: its age is unknown
        return {self.queue.name: Lag(backlog=visible, oldest_message_age_s=age)}

    async def close(self) -> None:
        """Make the messages received but not handed on visible again, and close the queue. Safe to call twice."""
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
