"""`mode: notifications`: S3 event notifications read from the SQS queue a bucket notifies (see the package
docstring)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from connectors.s3.config import S3Config
from connectors.sqs import QueueLane, Receipt, SqsQueue, message_attempt, sent_at
from hub.logs import fields
from hub.records import Outcome, Record
from hub.source import SourceContext


def _records_of(body: str) -> list[Any] | None:
    """The S3 event records of a message body ([] for S3's test event), None if it is no S3 event."""
    try:
        document = json.loads(body)
        if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
            document = json.loads(document["Message"])  # S3 -> SNS -> SQS without raw message delivery
    except (ValueError, TypeError, RecursionError):
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
