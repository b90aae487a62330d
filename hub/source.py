"""The Source contract: what a connector implements, and what the hub gives it.

A connector knows one protocol and nothing else. It reads records lane by lane, settles outcomes and renders
records as the AWS event for its source. It never retries a function and never sleeps in a loop of its own:
on trouble it raises, and the mapping logs, counts, backs off and reopens it.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from hub.health import Health
from hub.leases import Leases, LocalLeases
from hub.records import Outcome, Record

Family = Literal["stream", "queue", "async", "sync"]
"""How AWS invokes functions for a source: stream (ordered lanes, blocking retries), queue (redelivery by the
broker), async (asynchronous invocation: retries then the destination, as S3 and EventBridge do), sync (one
synchronous RequestResponse invocation per request, whose result is the answer: API Gateway, function URLs)."""


class LaneEnded(Exception):
    """Raised by Lane.read when the lane has no more records for this process (revoked, closed, finished)."""


class Lane(Protocol):
    """An ordered sub-stream of a source."""

    key: str
    """Stable name of the lane: a partition `topic-0`, a shard id, a folder, a schedule."""

    ordered: bool
    """True when records must reach the function in order, one batch at a time."""

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` records, in lane order.

        Waits at most `timeout` seconds (None: until a record is there) and returns [] when it ran out.
        Raises LaneEnded when the lane is gone. Cancelling a read loses nothing: records not returned stay
        unsettled and are read again (or redelivered) later.
        """
        ...

    async def settle(self, outcome: Outcome) -> None:
        """Make an outcome durable: checkpoint, delete or ack what settled; release what failed.

        Called exactly once for each batch, possibly concurrently for unordered lanes.
        """
        ...


class Source(Protocol):
    async def open(self) -> None:
        """Connect. Raises on trouble; the mapping backs off and calls open again after close."""
        ...

    def lanes(self) -> AsyncIterator[Lane]:
        """Yields lanes as they become available to this process; ends when the source is closed."""
        ...

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The event the function receives for these records (all from one lane) at this attempt (1-based)."""
        ...

    # Stream sources also implement:
    #   def batch_info(self, records: Sequence[Record]) -> dict[str, Any]
    # the part of AWS's on-failure record that describes a given-up batch, e.g. {"KinesisBatchInfo": {...}}.
    #
    # Any source may implement:
    #   def filter_view(self, record: Record) -> Mapping[str, Any]
    # what filter patterns see of a record (its metadata, with the data parsed under the source's data key),
    # computed only for mappings that have filters, so that the others never pay for parsing every record.

    async def close(self) -> None:
        """Release everything. Safe to call twice, and after a failed open."""
        ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock epoch seconds."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once time() >= when."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        # asyncio's timer runs on the monotonic clock; re-check the wall clock so a step of it is noticed.
        while (delay := when - time.time()) > 0:
            await asyncio.sleep(min(delay, 60.0))


@dataclass(slots=True)
class SourceContext:
    """What the hub hands a connector when it builds a source."""

    mapping: str
    store: Any  # hub.checkpoints.CheckpointStore
    region: str
    account_id: str
    clock: Clock = field(default_factory=SystemClock)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("hub.source"))
    max_in_flight: int = 1
    leases: Leases = field(default_factory=LocalLeases)
    """This hub's leases (hub.leases): a source with `leases="lanes"` takes one per lane. Over a store of one
    process, every lease is granted at once."""
    health: Health = field(default_factory=Health)
    """The mapping's health (hub.health). A connector whose client library retries inside and never raises reports
    what it sees here (`fail`/`ok`), or bounds its own broker calls with `watch`, so that /healthz tells the truth."""

    def scope(self, *parts: str) -> str:
        """A checkpoint-store scope private to this mapping."""
        return "/".join((self.mapping, *parts))


@dataclass(frozen=True, slots=True)
class Document:
    """One message for a destination.

    body        the JSON document (AWS's failure record)
    key         the key to send it with where the broker has keys (a Kafka record's original key)
    mapping     the mapping's name (an S3 destination uses it where AWS uses the ESM's UUID)
    lane        the lane the records came from (a shard id, `topic-partition`, a folder)
    attributes  a dead letter's message attributes in SQS's shape, `{name: {"DataType", "StringValue"}}`
                (hub.deadletter); None for a failure record. Only destinations whose spec says `dead_letter`
                receive documents with attributes.
    """

    body: Any
    key: bytes | None = None
    mapping: str = ""
    lane: str = ""
    attributes: dict[str, dict[str, str]] | None = None


class Destination(Protocol):
    """Where records go when a mapping gives up on them."""

    name: str
    per_record: bool
    """True: the dispatcher sends one document per record (a Kafka topic keeps each record's key);
    False: one document per given-up batch, as AWS sends to SQS, SNS and S3."""
    includes_payload: bool
    """True: documents carry the whole event as `payload` (AWS does so for S3 and Kafka destinations)."""

    async def send(self, documents: Sequence[Document]) -> None:
        """Store every document durably, or raise (the dispatcher retries with backoff)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    """A destination type (`destination_config.on_failure: {type: ...}`), as the registry knows it.

    build  makes a Destination from its validated config and the hub's default region
    """

    type: str
    config: builtins.type[BaseModel]
    build: Callable[[Any, str], Destination]
    requires: tuple[str, ...] = ()
    """Python modules it needs (an optional dependency): checked when a configuration is loaded."""
    extra: str = ""
    """The pip extra that installs them (`pip install 'eventhub[kafka]'`)."""
    shares_work: bool | Callable[[Any], bool] = False
    """Whether its broker shares one mapping's work between several consumers (a consumer group, competing
    consumers), so that the mapping may run in several processes (`provisioned_poller_config`): True, or a function
    of the source's validated config that says so. Leave it False if every process would read the same records."""
    minimum_pollers: int = 1
    """The least `provisioned_poller_config.minimum_pollers` it accepts, and the default (AWS: 2 for SQS)."""
    dead_letter: bool = False
    """True: it can be a dead-letter queue (a function's `dead_letter_config`): its `send` delivers a document's
    `attributes` with its body, as SQS message attributes do."""


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """A connector as the registry knows it.

    type          the `type:` users write in YAML
    config        its pydantic model (with `type: Literal[...]`, extra="forbid")
    build         makes a Source from a validated config and a SourceContext
    family        how AWS invokes functions for this source
    sample_event  a sample AWS event for `hub events`
    data_key      where filters find the record's data (`body`, `data`, `value`...); None: the whole record
    """

    type: str
    config: builtins.type[BaseModel]
    build: Callable[[Any, SourceContext], Source]
    family: Family
    summary: str
    sample_event: Callable[[], Any]
    data_key: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    """Python modules it needs (an optional dependency): checked when a configuration is loaded."""
    extra: str = ""
    """The pip extra that installs them (`pip install 'eventhub[kafka]'`)."""
    shares_work: bool | Callable[[Any], bool] = False
    """Whether its broker shares one mapping's work between several consumers (a consumer group, competing
    consumers), so that the mapping may run in several processes (`provisioned_poller_config`): True, or a function
    of the source's validated config that says so. Leave it False if every process would read the same records."""
    minimum_pollers: int = 1
    """The least `provisioned_poller_config.minimum_pollers` it accepts, and the default (AWS: 2 for SQS)."""
    leases: Literal["source", "lanes"] | Callable[[Any], Literal["source", "lanes"] | None] | None = None
    """How hubs that share a store share this source's work when its broker does not (`shares_work` False):
    `source`, its whole work is one unit that one hub at a time runs under a lease (a schedule, a folder: the hub
    wraps it in hub.exclusive.LeasedSource); `lanes`, it takes a lease per lane itself through
    `SourceContext.leases` and writes its checkpoints with each lease's fence (shards); or a function of the
    validated config that says which. None: every hub would read the same records (and pollers are refused)."""
    sample_variants: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """The other forms of the event the source emits, by name, as settings choose them (kafka's `msk`, schedule's
    `scheduler`): `hub events SOURCE NAME` prints one."""
    buckets: Callable[[Any], dict[str, str]] | None = None
    """The local folders a source's validated config presents as S3 buckets, {bucket name: absolute folder}: the
    hub's S3 endpoint serves them, so functions can read the objects their events name (`files`)."""
    serve: Callable[[Any], Any] | None = None
    """Sync sources only: makes the one server (hub.sync.SyncServer) that serves every mapping of this type, from
    a hub.sync.SyncContext; `build` then makes what that server needs of one mapping (its route)."""
    resolve: Callable[[Any], ConnectorSpec] | None = None
    """The spec that holds for one validated config, when a setting changes what kind of source it is (the `memory`
    connector's `mode: queue` makes it a queue: another family, so another policy and other settings). None: this
    spec holds for every config."""
