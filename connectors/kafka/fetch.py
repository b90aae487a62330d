"""What the Kafka source reads ahead: fetched record batches, parsed only when a lane takes their records.

aiokafka turns every fetched record into a ConsumerRecord when the fetch response arrives, one Python generator
step and one dataclass at a time, and the hub would then turn each into AWS's record: the same record shaped
twice, and every record read ahead (a fetch can bring tens of thousands per partition) held as several objects the
garbage collector walks again and again. So for the hub's own consumers aiokafka's fetcher is handed
`HubPartitionRecords` instead of its `PartitionRecords`: it yields one `Chunk` per record batch of the response,
which holds the batch still in its wire form (aiokafka's C batch reader, outside the collector's sight), and the
lane that takes records parses just those and shapes them into AWS's records (`events.kafka_records`) right away.

This is the hub's one patch of a library's private code, kept because the default configuration needs it to meet
its throughput target (bench/README.md, "Speed patches"): without it a record costs ~30 % more CPU, a backlog drains
20-30 % slower, and the hub's own process reaches ~0.5 of the raw client instead of ~0.8. What it relies on in
aiokafka, each checked against the installed aiokafka by tests/unit/test_kafka_fetch.py (which fails, naming the
version, when aiokafka changes under it):

- `aiokafka.consumer.fetcher.PartitionRecords`, a module global that `Fetcher._proc_fetch_request` looks up at
  each fetch and calls with the parameters of `_EXPECTED_PARAMETERS`, positionally, in that order;
- `FetchResult`, which takes records from what it was given by iteration (`next()`, `for`) and moves the
  partition's position to its `next_fetch_offset`, and uses nothing else of it;
- `MemoryRecords.has_next()` and `next_batch()`; a batch's `validate_crc()`, `is_control_batch`, `magic`,
  `base_offset`, `next_offset`, and one iteration over records with aiokafka's record attributes.

`HUB_KAFKA_FETCH_PATCH=off` in the hub's environment is its one switch: `install()` then returns False and the
source opens its consumer without `hub_records`, so it takes aiokafka's own path.

It is opt-in per consumer and falls back to aiokafka's own path whenever it would change anything:

- `install()` replaces the name `PartitionRecords` in `aiokafka.consumer.fetcher` with `_partition_records`, a
  factory that builds a `HubPartitionRecords` only for a consumer whose key_deserializer is `hub_records` (the
  hub's Kafka source sets it) reading with isolation level read_uncommitted (the hub's); every other consumer in
  the process gets aiokafka's class unchanged. It checks first that aiokafka's fetcher has the shape this module
  was written against (`_EXPECTED_PARAMETERS`); if not it installs nothing and returns False, and the source wraps
  the ConsumerRecords aiokafka returns in Chunks itself: slower, the same records.
- The offsets follow aiokafka's rules: control batches are skipped, records below the fetch offset (the front of
  a compressed batch) are dropped, the CRC is checked when asked, and `next_fetch_offset` (what aiokafka moves
  its position to) is the fetch offset until a chunk is taken, then the end of the last batch taken, so that a
  `getmany` with a `max_records` smaller than the fetch (it counts chunks here) stops exactly at a batch's end.
"""

from __future__ import annotations

import inspect
import os
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

_EXPECTED_PARAMETERS = (
    "self",
    "tp",
    "records",
    "aborted_transactions",
    "fetch_offset",
    "key_deserializer",
    "value_deserializer",
    "check_crcs",
    "isolation_level",
)
"""aiokafka.consumer.fetcher.PartitionRecords.__init__'s parameters (aiokafka 0.10 to 0.14)."""

SWITCH = "HUB_KAFKA_FETCH_PATCH"
"""The environment variable that turns the patch off (`off`); anything else, or nothing, leaves it on."""

_READ_UNCOMMITTED = 0

_original: Any = None
"""aiokafka's PartitionRecords, once `install()` replaced it."""


def hub_records(key: bytes | None) -> bytes | None:
    """The key_deserializer that marks a consumer as the hub's: it asks for Chunks instead of ConsumerRecords.

    As a deserializer it changes nothing (aiokafka's own path, the fallback, calls it on every key)."""
    return key


class Chunk:
    """Records of one partition, in offset order, not parsed yet: a record batch as fetched, or a list.

    `messages` yields objects with aiokafka's record attributes (offset, timestamp, timestamp_type, key, value,
    headers); `count` is how many are left, exact for a list, and for a batch its offsets left (more than its
    records if compaction removed some: the count only paces reading ahead)."""

    __slots__ = ("count", "messages")

    def __init__(self, messages: Iterator[Any], count: int) -> None:
        self.messages = messages
        self.count = count

    @classmethod
    def of(cls, messages: list[Any]) -> Chunk:
        """A chunk of fetched messages."""
        return cls(iter(messages), len(messages))


class HubPartitionRecords:
    """One partition's fetch response as Chunks, one per record batch, in the place of aiokafka's
    PartitionRecords (same interface: iteration, `next()`, `next_fetch_offset`)."""

    __slots__ = ("_chunks", "_ends", "_fetch_offset", "_iterator")

    def __init__(self, tp: Any, records: Any, fetch_offset: int, check_crcs: bool) -> None:
        from aiokafka.errors import CorruptRecordException

        chunks: list[Chunk] = []
        ends: list[int] = []
        end = fetch_offset
        while records.has_next():
            batch = records.next_batch()
            if check_crcs and not batch.validate_crc():
                # as aiokafka does: nothing of this response is returned, the next fetch asks again
                raise CorruptRecordException(f"Invalid CRC - {tp}")
            chunk = None
            if not batch.is_control_batch:
                if getattr(batch, "magic", 0) == 2 and batch.base_offset >= end:
                    reader = iter(batch)  # a batch can be iterated once; the callable iterator can be sliced often
                    chunk = Chunk(iter(reader.__next__, None), batch.next_offset - batch.base_offset)
                else:  # a compressed batch that starts before the fetch offset, or an old-format one: parse it now
                    front_dropped = [record for record in batch if record.offset >= end]
                    chunk = Chunk.of(front_dropped) if front_dropped else None
            end = max(end, batch.next_offset)
            if chunk is not None:
                chunks.append(chunk)
                ends.append(end)
            elif ends:
                ends[-1] = end  # taking the chunk before it takes this one (control records, nothing new) too
        self._chunks = chunks
        self._ends = ends
        self._fetch_offset = fetch_offset if chunks else end
        self._iterator: Iterator[Chunk] = iter(chunks)

    def __iter__(self) -> Iterator[Chunk]:
        return self._iterator

    def __next__(self) -> Chunk:
        return next(self._iterator)

    @property
    def next_fetch_offset(self) -> int:
        """The offset after the last message handed out (the fetch position aiokafka resumes from)."""
        taken = len(self._chunks) - self._iterator.__length_hint__()  # type: ignore[attr-defined]
        return self._ends[taken - 1] if taken else self._fetch_offset


class Buffer:
    """Records fetched for one partition and not yet taken by its lane: Chunks, parsed as they are taken, so that
    reading ahead holds record batches as they came, not objects per record."""

    __slots__ = ("_chunks", "_count")

    def __init__(self) -> None:
        self._chunks: deque[Chunk] = deque()
        self._count = 0

    def __len__(self) -> int:
        """About how many records it holds (see Chunk.count): what back-pressure goes by."""
        return self._count

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def extend(self, chunks: list[Chunk]) -> None:
        """Append fetched chunks, in order."""
        for chunk in chunks:
            self._chunks.append(chunk)
            self._count += chunk.count

    def take(self, limit: int) -> list[Any]:
        """Up to `limit` records, oldest first; [] only if it turned out to hold none."""
        chunks = self._chunks
        taken: list[Any] = []
        while chunks and len(taken) < limit:
            chunk = chunks[0]
            want = limit - len(taken)
            got = list(islice(chunk.messages, want))
            taken += got
            if len(got) < want or chunk.count <= len(got):
                chunks.popleft()
                self._count -= chunk.count
            else:
                chunk.count -= len(got)
                self._count -= len(got)
        return taken


def _partition_records(
    tp: Any,
    records: Any,
    aborted_transactions: Any,
    fetch_offset: int,
    key_deserializer: Callable[..., Any] | None,
    value_deserializer: Callable[..., Any] | None,
    check_crcs: bool,
    isolation_level: int,
) -> Any:
    if key_deserializer is hub_records and value_deserializer is None and isolation_level == _READ_UNCOMMITTED:
        return HubPartitionRecords(tp, records, fetch_offset, check_crcs)
    return _original(
        tp,
        records,
        aborted_transactions,
        fetch_offset,
        key_deserializer,
        value_deserializer,
        check_crcs,
        isolation_level,
    )


def install() -> bool:
    """Route the hub's consumers' fetches through HubPartitionRecords; True if it is (now or already) in place,
    False if the switch is off or the installed aiokafka is not the shape this module was written against."""
    global _original
    if os.environ.get(SWITCH, "").strip().lower() == "off":
        return False
    from aiokafka.consumer import fetcher

    current = getattr(fetcher, "PartitionRecords", None)
    if current is _partition_records:
        return True
    if current is None or tuple(inspect.signature(current.__init__).parameters) != _EXPECTED_PARAMETERS:
        return False
    _original = current
    fetcher.PartitionRecords = _partition_records
    return True
