"""Records, outcomes, give-ups, lag and the contiguous checkpoint helper: the values that flow between a Source and
the hub."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from hub.runtimes import Result


class Record(msgspec.Struct, eq=False, gc=False, repr_omit_defaults=True):
    """One item read from a source.

    lane       the ordered sub-stream it belongs to (a partition, a shard, a folder, a schedule)
    position   where it stands in its lane, as the source understands it (offset, file identity, fire time);
               the source uses it to settle
    payload    the AWS-shaped record the function sees inside the event (`Records[i]`, a Kafka record, ...)
    timestamp  when the event happened, epoch seconds: the clock for maximum_event_age / maximum_record_age
               (default: now)
    size       bytes the record adds to an invocation payload (for the 6 MB cap)
    item_id    the `itemIdentifier` by which a function names this record in `batchItemFailures`;
               None: `(lane, position)` (Kafka's `{partition, offset}`)
    attempt    delivery count as the broker reports it (SQS ApproximateReceiveCount, Redis delivery count)
    filter_view what filter patterns see, when the source computed it up front (any Mapping); None: the
               source's `filter_view(record)` if it has one, else the payload. Only mappings with filters look.
    order_key  streams: the partition key; with parallelization_factor > 1 order is kept per order_key
    received   monotonic time it was read (default: now); a batching window counts from its first record

    A msgspec Struct: sources build one per record, so construction is on the hot path, and a Struct is built in
    C (about a third of the cost of a Python __init__) and stays out of the cyclic garbage collector's sight
    (gc=False: a record never refers back to itself). Records compare by identity (eq=False).
    """

    lane: str
    position: Hashable
    payload: Any
    timestamp: float = msgspec.field(default_factory=time.time)
    size: int = 0
    item_id: Any = None
    attempt: int = 1
    filter_view: Any = None
    order_key: Any = None
    received: float = msgspec.field(default_factory=time.monotonic)

    def view(self) -> Any:
        """What a filter pattern is matched against, when the source has no `filter_view` of its own."""
        return self.payload if self.filter_view is None else self.filter_view

    @property
    def identifier(self) -> Any:
        """The `itemIdentifier` a function uses for this record in `batchItemFailures`."""
        return (self.lane, self.position) if self.item_id is None else self.item_id


_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode


def plain(event: Any) -> Any:
    """The event with its pre-encoded records decoded.

    A source may give the items of a top-level list of its event (its `Records`) as `msgspec.Raw`: their JSON,
    written once when the record was read. The execution environments' encoder copies it as it is; a runtime that
    hands the function Python objects, or encodes with the json module, and a destination's document, take the
    event through this first. An event without such items is returned as it is."""
    if type(event) is not dict:
        return event
    out = None
    for name, value in event.items():
        if type(value) is list and value and type(value[0]) is msgspec.Raw:
            if out is None:
                out = dict(event)
            out[name] = _decode_json(_encode_json(value))  # one pass in C over the whole list
    return event if out is None else out


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a batch ended. Every batch is settled exactly once with one of these.

    succeeded  the function processed them: settle (checkpoint, delete, ack)
    given_up   the mapping gave up on them and the destination acknowledged them (or there is none and
               they were dropped, as AWS drops them): settle as done
    filtered   no filter pattern matched: settle without invoking
    failed     not done: a queue makes them visible again, a stream lane does not move past them
    """

    succeeded: tuple[Record, ...] = ()
    given_up: tuple[Record, ...] = ()
    filtered: tuple[Record, ...] = ()
    failed: tuple[Record, ...] = ()

    @property
    def settled(self) -> tuple[Record, ...]:
        """The records that are done: succeeded, given up and filtered."""
        return self.succeeded + self.given_up + self.filtered

    def __len__(self) -> int:
        return len(self.succeeded) + len(self.given_up) + len(self.filtered) + len(self.failed)


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
        """The last invocation's request id (a new one when there was none)."""
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
        """The last error's `errorType`, else the condition."""
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


class ContiguousTracker:
    """The highest contiguous settled position of one lane.

    Positions are registered in the order they were read; settling can happen in any order. `advance()`
    returns the newest position before which everything is settled, once, so the caller checkpoints it.

    It runs for every record of every stream, so its loops are the C ones of dict, set and map: a batch of
    a thousand records costs a few dozen microseconds.
    """

    __slots__ = ("_done", "_order", "_whole")

    def __init__(self) -> None:
        self._order: list[Hashable] = []
        self._done: dict[Hashable, bool] = {}
        self._whole = False
        """Every position in _order is settled, though _done does not say so (see `done`)."""

    def track(self, positions: Iterable[Hashable]) -> None:
        """Register positions as read (in lane order). A position already tracked keeps its place and state."""
        if self._whole:
            self._spell_out()
        fresh = dict.fromkeys(positions, False)
        if self._done and not fresh.keys().isdisjoint(self._done):
            for position in [p for p in fresh if p in self._done]:
                del fresh[position]
        self._done.update(fresh)
        self._order.extend(fresh)

    def done(self, positions: Iterable[Hashable]) -> None:
        """Mark positions settled; positions never tracked (or already checkpointed) are ignored.

        The common case of an ordered lane, everything tracked settling at once in the order it was read, is one
        list comparison (by identity, in C) and a flag."""
        if not isinstance(positions, list):
            positions = list(positions)
        if positions and positions == self._order:
            self._whole = True
            return
        if self._whole:
            self._spell_out()
        done = self._done
        settled = done.keys() & set(positions)
        done.update(dict.fromkeys(settled, True))

    def _spell_out(self) -> None:
        self._done.update(dict.fromkeys(self._order, True))
        self._whole = False

    def advance(self) -> Hashable | None:
        """The newest position whose predecessors are all settled, if it moved since the last call."""
        order = self._order
        if not order:
            return None
        if self._whole:
            newest = order[-1]
            order.clear()
            self._done.clear()
            self._whole = False
            return newest
        flags = list(map(self._done.__getitem__, order))
        try:
            moved = flags.index(False)
        except ValueError:
            moved = len(order)
        if not moved:
            return None
        newest = order[moved - 1]
        if moved == len(order):
            order.clear()
            self._done.clear()
        else:
            list(map(self._done.__delitem__, order[:moved]))
            del order[:moved]
        return newest

    def __len__(self) -> int:
        return len(self._order)


def data_view(metadata: dict[str, Any], data_key: str, data: bytes | str | None) -> dict[str, Any]:
    """What filter patterns see for a record whose data is `data`: the metadata, plus the data under `data_key`,
    parsed as JSON when it is JSON (the caller base64-decodes first where the event carries base64).

    Data that is not JSON stays a string, so a pattern that looks inside it (`{"body": {"kind": [...]}}`) does
    not match, while patterns on the metadata still do; data that is not even UTF-8 is left out.
    """
    view = dict(metadata)
    if data is None:
        return view
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return view
    try:
        view[data_key] = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads: a string
        view[data_key] = data
    return view


@dataclass(frozen=True, slots=True)
class Lag:
    """How far behind a lane is, as its broker tells it: each field None where the source does not know it.

    /status shows it per lane and, per mapping, the largest of each field over its lanes; /metrics exports the
    mapping's (hub.metrics); the history keeps it (hub.history).
    """

    offset_lag: int | None = None
    """Records written and not yet processed (AWS: OffsetLag): a Kafka partition's high watermark minus the
    group's committed offset."""
    iterator_age_ms: float | None = None
    """Streams (AWS: IteratorAge): how old the newest record read is now, or the broker's MillisBehindLatest of the
    last read when larger; 0 once a read found the lane caught up."""
    oldest_message_age_s: float | None = None
    """Queues: the age of the oldest message waiting, as far as the queue tells it (the way each source estimates
    it is in its docs: SQS's CloudWatch ApproximateAgeOfOldestMessage is not an attribute a client can read)."""
    backlog: int | None = None
    """Queues: messages waiting to be delivered (SQS ApproximateNumberOfMessages, a Redis group's `lag`, a
    RabbitMQ queue's ready messages)."""
    replication_lag_bytes: int | None = None
    """PostgreSQL: the WAL its replication slot still holds for the hub (pg_current_wal_lsn() minus the slot's
    confirmed_flush_lsn), in bytes."""

    def as_dict(self) -> dict[str, float]:
        """The fields the source knows, by name (what /status and /history show)."""
        return {name: value for name in _LAG_FIELDS if (value := getattr(self, name)) is not None}


_LAG_FIELDS = ("offset_lag", "iterator_age_ms", "oldest_message_age_s", "backlog", "replication_lag_bytes")
