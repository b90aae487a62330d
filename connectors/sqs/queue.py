"""One SQS queue as the connectors use it: receiving, deleting, releasing, and the visibility heartbeat of held
messages (see the package docstring)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from connectors.sqs.config import QueueSettings
from connectors.sqs.events import message_attempt
from hub.aws import client
from hub.logs import fields
from hub.records import Outcome, Record
from hub.source import SourceContext

T = TypeVar("T")
RECEIVE_MAX = 10
"""The most messages one ReceiveMessage (and one *Batch call) takes."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A record's position: the order it was received in (within this process) and its receipt handle then."""

    serial: int
    handle: str


def receipt(record: Record) -> Receipt:
    """The Receipt a record of this queue carries as its position."""
    assert isinstance(record.position, Receipt)
    return record.position


@dataclass(slots=True)
class Held:
    """A message received and not settled yet: its newest receipt handle and when to extend its visibility."""

    receipt: str
    attempt: int
    due: float


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
        """The queue's name (from its ARN), or its URL before it is known."""
        return self.arn.rsplit(":", 1)[-1] or self.url

    @property
    def beat(self) -> float:
        """Seconds between extensions of the visibility of messages in flight: a third of the visibility timeout."""
        return max(0.2, self.visibility / 3)

    def log(self, level: int, message: str, *args: Any) -> None:
        """Log through the mapping's logger, with the mapping and the queue as fields."""
        self.context.log.log(level, message, *args, extra=fields(mapping=self.context.mapping, queue=self.name))

    async def open(self) -> None:
        """Connect, and learn the queue's URL, ARN, visibility timeout and whether it is FIFO."""
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
        return int(min(self.visibility, base * 2 ** min(max(0, attempt - 1), 64)))  # a float never overflows

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
