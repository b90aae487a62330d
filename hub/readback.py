"""What sits in a failure destination: reading it back, and removing what was replayed.

An `Inbox` is the reading side of a destination (hub/destinations, connectors): it lists the documents the hub
sent there (`Letter`s, each with an id stable across listings) without consuming them, takes chosen ones for a
replay and removes one once its replay succeeded.

| destination | id                 | listing                                   | removal                               |
| ----------- | ------------------ | ----------------------------------------- | ------------------------------------- |
| `file`      | a hash of the line | the JSON lines, oldest first              | the file rewritten without the line   |
| `sqs`       | the SQS message id | received with a short visibility timeout, | deleted by the receipt handle of the  |
|             |                    | never deleted                             | replay's own receive                  |
| `kafka`     | `partition:offset` | the topic read from its beginning by      | a topic cannot delete: the id is kept |
|             |                    | offsets, with no consumer group           | in the checkpoint store, and hidden   |
| `s3`        | the object's key   | the objects under `aws/lambda/`           | the object deleted                    |
| `redis`     | the entry's id     | XRANGE, this mapping's entries            | XDEL                                  |

`describe` tells, for any letter, when it was written, why, what records it stands for and how it can be
replayed: with the event the document holds (`event`: asynchronous invocation records, queue failure records,
dead letters, stream records sent to S3 or Kafka with their `payload`), by reading the records again from the
stream at the positions the document names (`source`: the batch info of the mapping's connector, its
`ConnectorSpec.batch_info_key`, as Kinesis, DynamoDB Streams and Kafka send to a file or SQS), or not at all.
Destinations other than `file` are read back by their connector (`DestinationSpec.inbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hub import registry
from hub.config import FileDestination
from hub.destinations import file_lock
from hub.source import ConnectorSpec


class InboxError(Exception):
    """The destination cannot be read (or its type cannot be read back): the message says why."""


class Gone(InboxError):
    """The records a failure record names can no longer be read from the stream (trimmed, or deleted)."""


@dataclass
class Letter:
    """One document in a failure destination.

    id          stable across listings: what a replay names
    body        the document: AWS's failure record, or a dead letter's event (JSON, or text as it was sent)
    attributes  a dead letter's message attributes (`RequestID`, `ErrorCode`, `ErrorMessage`), else None
    when        when it was written (ISO 8601), if the destination or the document tells
    handle      what `remove` needs (an SQS receipt handle); the inbox's own business
    """

    id: str
    body: Any
    attributes: dict[str, Any] | None = None
    when: str | None = None
    handle: Any = field(default=None, repr=False)


class Inbox(Protocol):
    """An on-failure destination read back, for the console and replays: its letters listed without consuming them,
    taken for a replay, then removed (replayed) or released (failed again)."""

    kind: str
    """The destination's type (`file`, `sqs`, ...): what the console shows of it (never its settings)."""

    async def list(self, limit: int) -> tuple[list[Letter], int | None]:
        """Up to `limit` letters, oldest first, without consuming them; and how many there are (None: unknown)."""
        ...

    async def take(self, ids: Sequence[str], hold: float) -> dict[str, Letter]:
        """The letters of these ids that are still there, held for about `hold` seconds where the destination
        holds messages (SQS's visibility timeout) so that `remove` can delete them."""
        ...

    async def remove(self, letter: Letter) -> None:
        """Remove a taken letter for good (its replay succeeded)."""
        ...

    async def release(self, letter: Letter) -> None:
        """Give back a taken letter that stays (its replay failed)."""
        ...

    async def close(self) -> None:
        """Release its clients."""


def open_inbox(config: Any, region: str, store: Any, mapping: str) -> Inbox:
    """The inbox of a destination config (`destination_config.on_failure`). InboxError if it has none."""
    if config is None:
        raise InboxError("this mapping has no on-failure destination (destination_config.on_failure)")
    if isinstance(config, FileDestination):
        return FileInbox(Path(config.path))
    spec = registry.get_destination(config.type)
    if spec.inbox is None:
        raise InboxError(f"a {spec.type!r} destination cannot be read back yet")
    inbox: Inbox = spec.inbox(config, region, store, mapping)
    return inbox


# ---- the file destination ----------------------------------------------------------------------------------------


def line_id(line: bytes) -> str:
    """The id of a line of a file destination: a hash of its text (the same line always has the same id)."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()[:16]


class FileInbox:
    """A file of JSON lines (hub.destinations.FileSink). A line `{"Body": ..., "MessageAttributes": ...}` is a
    dead letter; any other line is a failure record. Ids are hashes of the lines: two identical lines share one,
    and a replay of it removes one of them."""

    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [line for line in data.splitlines(keepends=True) if line.strip() and line.endswith(b"\n")]

    async def list(self, limit: int) -> tuple[list[Letter], int | None]:
        """The first `limit` lines as letters, and how many lines there are."""
        lines = await asyncio.to_thread(self._lines)
        return [_file_letter(line) for line in lines[:limit]], len(lines)

    async def take(self, ids: Sequence[str], hold: float) -> dict[str, Letter]:
        """The letters of these ids still in the file (a file holds nothing back: `hold` is not used)."""
        wanted = set(ids)
        found: dict[str, Letter] = {}
        for line in await asyncio.to_thread(self._lines):
            letter = _file_letter(line)
            if letter.id in wanted and letter.id not in found:
                found[letter.id] = letter
        return found

    async def remove(self, letter: Letter) -> None:
        """Remove the letter's line from the file, atomically (rewritten, fsynced, renamed over it), under the file's
        lock."""
        async with file_lock(self.path):
            await asyncio.to_thread(self._rewrite_without, letter.id)

    def _rewrite_without(self, id_: str) -> None:
        """Write the file again without the first line of this id: to a new file, fsynced, renamed over it (a
        crash leaves the old file or the new one, never half of one)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        kept, dropped = [], False
        for line in data.splitlines(keepends=True):
            if not dropped and line.strip() and line_id(line) == id_:
                dropped = True
                continue
            kept.append(line)
        if not dropped:
            return
        temporary = self.path.with_name(f".{self.path.name}.replay-{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"".join(kept))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)

    async def release(self, letter: Letter) -> None:
        """Nothing to give back: the line stays in the file."""

    async def close(self) -> None:
        """Nothing to release."""


def _file_letter(line: bytes) -> Letter:
    id_ = line_id(line)
    try:
        document = json.loads(line)
    except ValueError:
        return Letter(id_, line.decode(errors="replace").rstrip("\n"))
    if isinstance(document, dict) and set(document) == {"Body", "MessageAttributes"}:
        return Letter(id_, document["Body"], document["MessageAttributes"])
    when = document.get("timestamp") if isinstance(document, dict) else None
    return Letter(id_, document, when=when if isinstance(when, str) else None)


# ---- what a letter says ------------------------------------------------------------------------------------------


def parsed(text: Any) -> Any:
    """A message body as JSON when it is JSON, else as it is."""
    if isinstance(text, str | bytes):
        with contextlib.suppress(ValueError):
            return json.loads(text)
    return text


def _attribute(attributes: dict[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    if isinstance(value, dict):
        found = value.get("StringValue")
        return None if found is None else str(found)
    return None


def batch_info(body: Any, spec: ConnectorSpec | None) -> dict[str, Any] | None:
    """The batch info by which a stream failure record names its records, under the key of the mapping's connector
    (`spec.batch_info_key`); None when the record has none."""
    key = spec.batch_info_key if spec is not None else None
    info = body.get(key) if key is not None and isinstance(body, dict) else None
    return info if isinstance(info, dict) else None


def event_of(letter: Letter) -> Any:
    """The event the function got, when the letter holds it; else None (a stream's record holds positions)."""
    body = letter.body
    if letter.attributes is not None:
        return body
    if isinstance(body, dict):
        if "requestPayload" in body:
            return body["requestPayload"]
        if "payload" in body:
            return parsed(body["payload"])
    return None


def describe(letter: Letter, spec: ConnectorSpec | None = None) -> dict[str, Any]:
    """What the console shows of a letter of a mapping whose connector is `spec`: when, why, the records it stands
    for and how it can be replayed."""
    body = letter.body
    context = body.get("requestContext") if isinstance(body, dict) else None
    context = context if isinstance(context, dict) else {}
    entry: dict[str, Any] = {
        "id": letter.id,
        "when": letter.when or (body.get("timestamp") if isinstance(body, dict) else None),
        "kind": "dead letter" if letter.attributes is not None else "failure record",
        "condition": context.get("condition"),
        "request_id": context.get("requestId"),
        "attempts": context.get("approximateInvokeCount"),
        "error": None,
    }
    if letter.attributes is not None:
        entry["request_id"] = _attribute(letter.attributes, "RequestID")
        entry["error"] = _attribute(letter.attributes, "ErrorMessage")
        entry["condition"] = f"ErrorCode {_attribute(letter.attributes, 'ErrorCode')}"
    elif isinstance(body, dict):
        entry["error"] = _error(body)
    event = event_of(letter)
    info = batch_info(body, spec)
    if event is not None:
        entry.update(replay="event", records=_count(event), summary=summarize(event))
    elif info is not None and spec is not None:
        entry.update(replay="source", source=spec.type, records=info.get("batchSize"), summary=_positions(info))
    else:
        entry.update(replay=None, records=None, summary="the document holds neither the event nor its positions")
    return entry


def _error(body: dict[str, Any]) -> str | None:
    response = body.get("responsePayload")
    if isinstance(response, dict) and ("errorType" in response or "errorMessage" in response):
        return f"{response.get('errorType', 'Error')}: {response.get('errorMessage', '')}".strip()
    context = body.get("responseContext")
    if isinstance(context, dict) and context.get("functionError"):
        return f"function error ({context['functionError']})"
    return None


def _count(event: Any) -> int:
    if isinstance(event, dict):
        if isinstance(event.get("Records"), list):
            return len(event["Records"])
        if isinstance(event.get("records"), dict):
            return sum(len(v) for v in event["records"].values() if isinstance(v, list))
    return 1


def summarize(event: Any) -> str:
    """A line about an event: its source and the first record's name (an S3 key, a message id, an offset)."""
    if not isinstance(event, dict):
        text = json.dumps(event, default=str) if not isinstance(event, str) else event
        return text[:120]
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        first = records[0]
        source = first.get("eventSource") or first.get("EventSource") or "records"
        name = (
            (first.get("s3") or {}).get("object", {}).get("key")
            or first.get("messageId")
            or (first.get("kinesis") or {}).get("sequenceNumber")
            or (first.get("dynamodb") or {}).get("SequenceNumber")
            or first.get("eventID")
        )
        more = f" (+{len(records) - 1} more)" if len(records) > 1 else ""
        return f"{source}: {name}{more}" if name else f"{source}: {len(records)} records"
    if isinstance(event.get("records"), dict):
        parts = []
        for lane, items in event["records"].items():
            if isinstance(items, list) and items:
                first, last = items[0].get("offset"), items[-1].get("offset")
                parts.append(f"{lane} offset {first}" + (f"..{last}" if last != first else ""))
        return f"{event.get('eventSource', 'kafka')}: " + ", ".join(parts)
    if "detail-type" in event:
        return f"{event.get('source', '')}: {event['detail-type']}"
    return json.dumps(event, default=str)[:120]


def _positions(info: dict[str, Any]) -> str:
    if "shardId" in info:
        return f"shard {info['shardId']} sequence {info.get('startSequenceNumber')}..{info.get('endSequenceNumber')}"
    ranges = info.get("recordsInfo")
    if isinstance(ranges, dict):
        return ", ".join(
            f"{lane} offset {r.get('firstRecordOffset')}..{r.get('lastRecordOffset')}"
            for lane, r in ranges.items()
            if isinstance(r, dict)
        )
    return "positions unknown"
