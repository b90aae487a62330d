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

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from hub.records import Record
from hub.runtimes import Result
from hub.source import Destination, Document

ERROR_MESSAGE_LIMIT = 1024
"""Lambda truncates a dead letter's ErrorMessage to 1 KB."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Why and how the dispatcher gave up on an asynchronous event.

    attempts      invocations made (0 when none was: the event was too old, or the function disabled)
    result        the last invocation's result, None when there was none
    condition     `RetriesExhausted`, `EventAgeExceeded` or `ZeroReservedConcurrency` (as in the invocation record)
    function_arn  the function's unqualified ARN
    """

    attempts: int
    result: Result | None
    condition: str
    function_arn: str

    @property
    def request_id(self) -> str:
        return self.result.request_id if self.result is not None else str(uuid.uuid4())

    @property
    def status_code(self) -> int:
        """The HTTP status of the last invoke: 200 for a function error (the invoke itself succeeded), 429 when
        the function was throttled (reserved concurrency 0) or never invoked."""
        if self.result is None or self.result.error == "Throttled":
            return 429
        return 200

    @property
    def error_type(self) -> str:
        payload = self.result.payload if self.result is not None else None
        if isinstance(payload, dict) and payload.get("errorType"):
            return str(payload["errorType"])
        return self.condition

    @property
    def error_message(self) -> str:
        """The last error's message, at most 1 KB (whole UTF-8 characters)."""
        payload = self.result.payload if self.result is not None else None
        if isinstance(payload, dict) and "errorMessage" in payload:
            message = str(payload["errorMessage"])
        elif self.result is not None:
            message = str(payload)
        elif self.condition == "EventAgeExceeded":
            message = "the event is older than maximum_event_age"
        else:
            message = "the function was not invoked"
        return truncate(message, ERROR_MESSAGE_LIMIT)


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


def string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def number(value: int) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": str(value)}


def lambda_dead_letter(event: Any, give_up: GiveUp, *, mapping: str = "", lane: str = "") -> Document:
    """Lambda's function DLQ message: the original event, unmodified, with RequestID, ErrorCode, ErrorMessage."""
    attributes = {
        "RequestID": string(give_up.request_id),
        "ErrorCode": number(give_up.status_code),
        "ErrorMessage": string(give_up.error_message),
    }
    return Document(event, mapping=mapping, lane=lane, attributes=attributes)


@runtime_checkable
class DeadLetterSource(Protocol):
    """A source with a dead-letter queue of its own (EventBridge Scheduler's target DeadLetterConfig)."""

    @property
    def dead_letter_config(self) -> Any:
        """The destination config of its dead-letter queue (a `file` or `sqs` destination), or None."""
        ...

    def dead_letter(self, records: Sequence[Record], give_up: GiveUp) -> Document:
        """The document its dead-letter queue receives for records the dispatcher gave up on."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetterQueue:
    """One dead-letter queue of a dispatcher: where it is, and how its document is made."""

    destination: Destination
    source: DeadLetterSource | None = None
    """None: the function's DLQ (Lambda's format); else the source builds the document (its own format)."""

    def document(self, records: Sequence[Record], event: Any, give_up: GiveUp, mapping: str) -> Document:
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
