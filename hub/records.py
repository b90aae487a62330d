"""Records, outcomes and the contiguous checkpoint helper: the values that flow between a Source and the hub."""

from __future__ import annotations

import json
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class Record:
    """One item read from a source.

    lane       the ordered sub-stream it belongs to (a partition, a shard, a folder, a schedule)
    position   where it stands in its lane, as the source understands it (offset, file identity, fire time);
               the source uses it to settle
    payload    the AWS-shaped record the function sees inside the event (`Records[i]`, a Kafka record, ...)
    timestamp  when the event happened, epoch seconds: the clock for maximum_event_age / maximum_record_age
    size       bytes the record adds to an invocation payload (for the 6 MB cap)
    item_id    the `itemIdentifier` by which a function names this record in `batchItemFailures`
    attempt    delivery count as the broker reports it (SQS ApproximateReceiveCount, Redis delivery count)
    filter_view what filter patterns see: metadata plus the parsed data under the source's data key; any
               Mapping, so a source may build it lazily (only mappings with filters ever look)
    order_key  streams: the partition key; with parallelization_factor > 1 order is kept per order_key
    """

    lane: str
    position: Hashable
    payload: Any
    timestamp: float = field(default_factory=time.time)
    size: int = 0
    item_id: Any = None
    attempt: int = 1
    filter_view: Any = None
    order_key: Any = None
    received: float = field(default_factory=time.monotonic)

    def view(self) -> Any:
        """What a filter pattern is matched against."""
        return self.payload if self.filter_view is None else self.filter_view


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
        return self.succeeded + self.given_up + self.filtered

    def __len__(self) -> int:
        return len(self.succeeded) + len(self.given_up) + len(self.filtered) + len(self.failed)


class ContiguousTracker:
    """The highest contiguous settled position of one lane.

    Positions are registered in the order they were read; settling can happen in any order. `advance()`
    returns the newest position before which everything is settled, once, so the caller checkpoints it.
    """

    __slots__ = ("_done", "_last", "_order")

    def __init__(self) -> None:
        self._order: list[Hashable] = []
        self._done: dict[Hashable, bool] = {}
        self._last: Hashable | None = None

    def track(self, positions: Iterable[Hashable]) -> None:
        for position in positions:
            if position not in self._done:
                self._done[position] = False
                self._order.append(position)

    def done(self, positions: Iterable[Hashable]) -> None:
        for position in positions:
            if position in self._done:
                self._done[position] = True

    def advance(self) -> Hashable | None:
        """The newest position whose predecessors are all settled, if it moved since the last call."""
        moved = 0
        for position in self._order:
            if not self._done[position]:
                break
            moved += 1
        if not moved:
            return None
        newest = self._order[moved - 1]
        for position in self._order[:moved]:
            del self._done[position]
        del self._order[:moved]
        self._last = newest
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
    except ValueError:
        view[data_key] = data
    return view
