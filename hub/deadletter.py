"""Dead-letter queues of asynchronous invocation: what they receive when the hub gives up on an event.

Two kinds, as on AWS, beside the mapping's `destination_config.on_failure` (which gets the invocation record):

- a function's `dead_letter_config` (Lambda's DeadLetterConfig): the original event as the message body, with the
  message attributes `RequestID` (String), `ErrorCode` (Number: the HTTP status of the last invoke, 200 for a
  function error, 429 when it was throttled) and `ErrorMessage` (String, at most 1 KB);
- a source's own dead-letter queue (EventBridge Scheduler's target DeadLetterConfig), whose document the source
  builds itself (`DeadLetterSource`).

Attributes are in SQS's message-attribute shape, `{"Name": {"DataType": "String", "StringValue": "..."}}`: an
`sqs` destination sends them as the message's attributes, a `file` destination writes one JSON line
`{"Body": <the event>, "MessageAttributes": {...}}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub.records import GiveUp, Record
from hub.source import DeadLetterSource, Destination, Document

__all__ = ["DeadLetterQueue", "GiveUp", "dead_letter_queues", "lambda_dead_letter", "number", "string"]


def string(value: str) -> dict[str, str]:
    """A String message attribute, in SQS's shape."""
    return {"DataType": "String", "StringValue": value}


def number(value: int) -> dict[str, str]:
    """A Number message attribute, in SQS's shape."""
    return {"DataType": "Number", "StringValue": str(value)}


def lambda_dead_letter(event: Any, give_up: GiveUp, *, mapping: str = "", lane: str = "") -> Document:
    """Lambda's function DLQ message: the original event, unmodified, with RequestID, ErrorCode, ErrorMessage."""
    attributes = {
        "RequestID": string(give_up.request_id),
        "ErrorCode": number(give_up.status_code),
        "ErrorMessage": string(give_up.error_message),
    }
    return Document(event, mapping=mapping, lane=lane, attributes=attributes)


@dataclass(frozen=True, slots=True)
class DeadLetterQueue:
    """One dead-letter queue of a dispatcher: where it is, and how its document is made."""

    destination: Destination
    source: DeadLetterSource | None = None
    """None: the function's DLQ (Lambda's format); else the source builds the document (its own format)."""

    def document(self, records: Sequence[Record], event: Any, give_up: GiveUp, mapping: str) -> Document:
        """The document this queue receives for given-up records: the source's own, or Lambda's (the original
        `event`)."""
        if self.source is not None:
            return self.source.dead_letter(records, give_up)
        return lambda_dead_letter(event, give_up, mapping=mapping, lane=records[0].lane)


def dead_letter_queues(function_target: Any, source: object, region: str) -> list[DeadLetterQueue]:
    """The dead-letter queues of a mapping of asynchronous invocations: its function's (`function_target`, a
    destination config or None), then its source's own, if it has one."""
    from hub.destinations import build_destination

    queues = []
    destination = build_destination(function_target, region)
    if destination is not None:
        queues.append(DeadLetterQueue(destination))
    if isinstance(source, DeadLetterSource):
        destination = build_destination(source.dead_letter_config, region)
        if destination is not None:
            queues.append(DeadLetterQueue(destination, source))
    return queues
