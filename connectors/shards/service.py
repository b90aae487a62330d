"""What a connector supplies to the shard readers: a `ShardService` (its API calls and its record shape), the
values it answers with, and the errors it raises."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from hub.records import Lag, Record

StartKind = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]


class IteratorExpired(Exception):
    """The shard iterator is too old (5 minutes on Kinesis, 15 on DynamoDB Streams)."""


class ShardGone(Exception):
    """The shard no longer exists (trimmed past the retention period, or the stream was deleted)."""


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, without importing botocore."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """A shard as the stream lists it: its id, its parents (read first), and whether it is closed (it has an end)."""

    shard_id: str
    parents: tuple[str, ...]
    closed: bool


@dataclass(frozen=True, slots=True)
class Start:
    """Where a shard iterator starts. `not_before`: records older than this are skipped (DynamoDB Streams has
    no AT_TIMESTAMP, so a LATEST mapping resumed after a restart reads from TRIM_HORIZON and skips)."""

    kind: StartKind
    sequence: str | None = None
    timestamp: float | None = None
    not_before: float | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords answer: the raw records, the next iterator (None: the shard's end) and how far behind it is."""

    records: list[Any]
    next_iterator: str | None
    millis_behind: int | None


class IteratorAge:
    """A shard's IteratorAge (AWS's name), from what its reads bring back and nothing more: how old the newest
    record read is now (0 once a read found the shard caught up), or the last MillisBehindLatest when larger
    (Kinesis tells it; DynamoDB Streams does not)."""

    def __init__(self) -> None:
        self.behind_ms: int | None = None
        self.newest: float | None = None
        """The arrival time of the newest record read; None once a read found the shard caught up."""
        self.observed = False
        """A read has answered: the age is known."""

    def observe(self, page: Page, records: list[Record]) -> None:
        """A GetRecords answered `page`, of which `records` are handed on."""
        self.observed = True
        self.behind_ms = page.millis_behind
        if records:
            self.newest = records[-1].timestamp
        elif not page.millis_behind and not page.records:
            self.newest = None  # caught up

    def lag(self, now: float) -> Lag | None:
        """The shard's lag at `now` (epoch seconds); None before the first read answered."""
        if not self.observed:
            return None
        age = 0.0 if self.newest is None else max(0.0, (now - self.newest) * 1000)
        return Lag(iterator_age_ms=round(max(age, float(self.behind_ms or 0)), 3))


class ShardService(Protocol):
    """What differs between Kinesis and DynamoDB Streams."""

    kind: str
    """`kinesis` or `dynamodb`: the checkpoint scope and the word in log lines."""
    max_limit: int
    """The most records one GetRecords call may ask for."""
    batch_info_key: str
    """`KinesisBatchInfo` or `DDBStreamBatchInfo` in on-failure records."""
    arrival_millis: bool
    """Whether on-failure records show arrival times with milliseconds (Kinesis) or whole seconds (DynamoDB)."""
    arn: str

    async def connect(self, stack: AsyncExitStack) -> str:
        """Make the clients (entered on `stack`), set `arn`, and return what names this incarnation of the
        stream in the checkpoint store (a stream deleted and made again under the same name is another)."""
        ...

    async def shards(self) -> list[ShardInfo]:
        """Every shard of the stream, with its parents and whether it is closed."""

    async def iterator(self, shard_id: str, start: Start) -> str:
        """A shard iterator. Raises ShardGone."""
        ...

    async def get_records(self, iterator: str, limit: int) -> Page:
        """One GetRecords call. Raises IteratorExpired."""
        ...

    def record(self, shard_id: str, raw: Any) -> Record:
        """The hub's Record (payload in the AWS event shape) of one raw record. position: int(sequence number);
        item_id: the sequence number string."""
        ...

    def latest(self, since: float) -> Start:
        """Where a new LATEST mapping starts reading an open shard (it began at `since`)."""
        ...

    def resume_latest(self, since: float) -> Start:
        """Where a LATEST mapping that began at `since`, and settled nothing on this shard, starts after a restart."""
        ...
