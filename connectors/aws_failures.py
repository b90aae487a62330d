"""The `sqs` and `s3` failure destinations read back, for the console and replays (hub.readback).

SQS: a listing receives the messages with a short visibility timeout (`LIST_VISIBILITY`), never deletes them,
and makes them visible again at once when it is done; a message's id is its SQS message id. Each listing counts
as a receive (ApproximateReceiveCount grows: a queue with a redrive policy of its own would move a message listed
often enough). A replay receives them again, holding the chosen ones for its run, and deletes one by the receipt
handle of that receive once its replay succeeded. A dead letter (a message with the `RequestID` attribute) holds
the event as its body; any other message is AWS's failure record.

S3: the objects under `<prefix>aws/lambda/` (AWS's key layout), each a failure record with the whole event as
`payload`; the id is the object's key, and a replayed object is deleted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.aws_destinations import S3DestinationConfig, SqsDestinationConfig, _Clients
from hub.readback import Letter, parsed

LIST_VISIBILITY = 5
"""Seconds a listed message stays invisible if the listing cannot make it visible again."""
TAKE_TIMEOUT = 20.0
"""Longest a replay looks for the messages it was asked for."""
MOST_HOLD = 43_200
"""SQS's longest visibility timeout (12 hours)."""


def _iso_ms(value: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (TypeError, ValueError):
        return None


def _letter(message: dict[str, Any]) -> Letter:
    attributes = message.get("MessageAttributes") or None
    body = parsed(message.get("Body"))
    when = _iso_ms((message.get("Attributes") or {}).get("SentTimestamp"))
    if attributes is not None and "RequestID" in attributes:
        return Letter(message["MessageId"], body, attributes, when, message["ReceiptHandle"])
    return Letter(message["MessageId"], body, None, when, message["ReceiptHandle"])


class SqsInbox:
    """An `sqs` destination read back: listing receives with a short visibility timeout and shows the messages again;
    a replay holds the chosen ones, and deletes each that replayed."""

    kind = "sqs"

    def __init__(self, config: SqsDestinationConfig, region: str) -> None:
        self.config = config
        self._clients = _Clients(config.connection, "sqs", region)
        self._url = config.queue_url

    async def _queue(self) -> tuple[Any, str]:
        sqs = await self._clients.get()
        if self._url is None:
            self._url = str((await sqs.get_queue_url(QueueName=self.config.queue_name))["QueueUrl"])
        return sqs, self._url

    async def _receive(self, sqs: Any, url: str, count: int, visibility: int, wait: int) -> list[dict[str, Any]]:
        answer = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, count)),
            VisibilityTimeout=visibility,
            WaitTimeSeconds=wait,
            AttributeNames=["SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        return list(answer.get("Messages") or [])

    async def _show_again(self, sqs: Any, url: str, handles: Sequence[str]) -> None:
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for i, h in enumerate(handles[start : start + 10])
            ]
            await sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)

    async def list(self, limit: int) -> tuple[list[Letter], int | None]:
        """Up to `limit` messages (received, then made visible again at once), and the queue's approximate count."""
        sqs, url = await self._queue()
        counted = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        total = int(counted.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
        seen: dict[str, Letter] = {}
        try:
            while len(seen) < limit:
                fresh = [
                    m
                    for m in await self._receive(sqs, url, limit - len(seen), LIST_VISIBILITY, 0)
                    if m["MessageId"] not in seen
                ]
                if not fresh:
                    break
                for message in fresh:
                    seen[message["MessageId"]] = _letter(message)
        finally:
            await self._show_again(sqs, url, [letter.handle for letter in seen.values()])
        letters = sorted(seen.values(), key=lambda letter: (letter.when or "", letter.id))
        return letters, max(total, len(letters))

    async def take(self, ids: Sequence[str], hold: float) -> dict[str, Letter]:
        """The messages of these ids, received and held invisible for `hold` seconds (at most SQS's 12 hours); looks
        for at most TAKE_TIMEOUT, and shows the others again at once."""
        sqs, url = await self._queue()
        wanted = set(ids)
        found: dict[str, Letter] = {}
        others: list[str] = []
        deadline = time.monotonic() + TAKE_TIMEOUT
        try:
            while wanted - found.keys() and time.monotonic() < deadline:
                messages = await self._receive(sqs, url, 10, LIST_VISIBILITY, 1)
                if not messages:
                    break
                for message in messages:
                    if message["MessageId"] in wanted and message["MessageId"] not in found:
                        await sqs.change_message_visibility(
                            QueueUrl=url,
                            ReceiptHandle=message["ReceiptHandle"],
                            VisibilityTimeout=int(min(MOST_HOLD, hold)),
                        )
                        found[message["MessageId"]] = _letter(message)
                    else:
                        others.append(message["ReceiptHandle"])
        finally:
            await self._show_again(sqs, url, others)
        return found

    async def remove(self, letter: Letter) -> None:
        """Delete the message (by the receipt handle of its take)."""
        sqs, url = await self._queue()
        await sqs.delete_message(QueueUrl=url, ReceiptHandle=letter.handle)

    async def release(self, letter: Letter) -> None:
        """Make the message visible again at once."""
        sqs, url = await self._queue()
        await self._show_again(sqs, url, [letter.handle])

    async def close(self) -> None:
        """Close the client."""
        await self._clients.close()


class S3Inbox:
    """An `s3` destination read back: the failure records under `<prefix>aws/lambda/`, each object a letter named by
    its key."""

    kind = "s3"

    def __init__(self, config: S3DestinationConfig, region: str) -> None:
        self.config = config
        self.prefix = f"{config.prefix}aws/lambda/"
        self._clients = _Clients(config.connection, "s3", region)

    async def _letter(self, s3: Any, key: str) -> Letter | None:
        try:
            answer = await s3.get_object(Bucket=self.config.bucket, Key=key)
        except Exception as exc:
            if type(exc).__name__ == "NoSuchKey" or "NoSuchKey" in str(exc):
                return None
            raise
        async with answer["Body"] as stream:
            data = await stream.read()
        modified = answer.get("LastModified")
        when = modified.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if modified else None
        body = parsed(data.decode(errors="replace"))
        stamp = body.get("timestamp") if isinstance(body, dict) else None
        return Letter(key, body, None, stamp if isinstance(stamp, str) else when)

    async def list(self, limit: int) -> tuple[list[Letter], int | None]:
        """The oldest `limit` objects' records, and how many objects there are."""
        s3 = await self._clients.get()
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.config.bucket, "Prefix": self.prefix}
        while True:
            answer = await s3.list_objects_v2(**kwargs)
            keys.extend(item["Key"] for item in answer.get("Contents") or [])
            if not answer.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = answer["NextContinuationToken"]
        letters = [letter for letter in await asyncio.gather(*(self._letter(s3, k) for k in keys[:limit])) if letter]
        letters.sort(key=lambda letter: (letter.when or "", letter.id))
        return letters, len(keys)

    async def take(self, ids: Sequence[str], hold: float) -> dict[str, Letter]:
        """The records of these keys that still exist (`hold` is not used: nothing else reads them)."""
        s3 = await self._clients.get()
        found = {}
        for key in ids:
            if key.startswith(self.prefix):
                letter = await self._letter(s3, key)
                if letter is not None:
                    found[key] = letter
        return found

    async def remove(self, letter: Letter) -> None:
        """Delete the object."""
        s3 = await self._clients.get()
        await s3.delete_object(Bucket=self.config.bucket, Key=letter.id)

    async def release(self, letter: Letter) -> None:
        """Nothing to give back: the object stays."""

    async def close(self) -> None:
        """Close the client."""
        await self._clients.close()
