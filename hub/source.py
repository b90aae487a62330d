"""The Source contract: what a connector implements, and what the hub gives it.

A connector knows one protocol and nothing else. It reads records lane by lane, settles outcomes and renders
records as the AWS event for its source. It never retries a function and never sleeps in a loop of its own:
on trouble it raises, and the mapping logs, counts, backs off and reopens it.

What a connector author writes:

- a `Source` (open, lanes, render, close) whose lanes are `Lane`s (read, settle);
- optionally, the capabilities below, each a protocol the hub checks by type when it builds the mapping:
  `BatchInfoSource` (stream sources: the batch info of AWS's on-failure record), `FilterViewSource` (what filter
  patterns see of a record), `ArnSource` (the ARN tumbling windows name), `DeadLetterSource` (a dead-letter
  queue of the source's own, as EventBridge Scheduler has), `LagSource` (how far behind its lanes are: /status,
  /metrics, the history) and `TraceSource` (the trace context its records carry);
- a `ConnectorSpec` that registers it: its config model, how to build it, its family, its defaults and the
  hooks by which it checks a mapping and says how its work is shared between processes;
- optionally a `DestinationSpec` for an on-failure destination (`Destination`, which receives `Document`s).

Connectors depend on the hub, never the other way round: nothing in the hub names a connector.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from hub.backoff import Backoff
from hub.clock import Clock, SystemClock
from hub.health import Health
from hub.leases import Leases, LocalLeases
from hub.records import GiveUp, Lag, Outcome, Record
from hub.store import CheckpointStore

Family = Literal["stream", "queue", "async", "sync"]
"""How AWS invokes functions for a source: stream (ordered lanes, blocking retries), queue (redelivery by the
broker), async (asynchronous invocation: retries then the destination, as S3 and EventBridge do), sync (one
synchronous RequestResponse invocation per request, whose result is the answer: API Gateway, function URLs)."""


class LaneEnded(Exception):
    """Raised by Lane.read when the lane has no more records for this process (revoked, closed, finished)."""


class SettingError(ValueError):
    """A configuration problem at a place: raised by a ConnectorSpec's `check` (and by the hub's own models).

    `at` is the path of the offending setting, relative to the source's config for a connector's `check`
    (`("consumer_name",)`), so that the error names the file, the line and the field.
    """

    def __init__(self, at: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.at = at


class Lane(Protocol):
    """An ordered sub-stream of a source: what the mapping reads, batches, dispatches and settles."""

    key: str
    """Stable name of the lane: a partition `topic-0`, a shard id, a folder, a schedule."""

    ordered: bool
    """True when records must reach the function in order: the mapping keeps one batch of the lane in flight at
    a time (parallelization_factor spreads it over sub-lanes by order key). False: up to `max_in_flight` batches
    at once, settled in any order."""

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` records, in lane order.

        Waits at most `timeout` seconds (None: until a record is there) and returns [] when it ran out.
        Raises LaneEnded when the lane is gone. Cancelling a read loses nothing: records not returned stay
        unsettled and are read again (or redelivered) later. Any other exception is a read failure: the mapping
        marks itself degraded, backs off and reads again.
        """
        ...

    async def settle(self, outcome: Outcome) -> None:
        """Make an outcome durable: checkpoint, delete or ack what settled; release what failed.

        Called exactly once for each batch, possibly concurrently for unordered lanes. Records of
        `outcome.failed` must be read again: a queue makes them visible again, a stream lane does not move its
        checkpoint past them. Raising leaves the outcome unsettled (the records are delivered again later).
        """
        ...


class Source(Protocol):
    """A connector's reader of one mapping's source. The mapping calls open, iterates lanes, then close; after a
    failure it calls close and, after a backoff, open again."""

    async def open(self) -> None:
        """Connect. Raises on trouble; the mapping backs off and calls open again after close."""
        ...

    def lanes(self) -> AsyncIterator[Lane]:
        """Yields lanes as they become available to this process; ends when the source is closed."""
        ...

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The event the function receives for these records (all from one lane) at this attempt (1-based)."""
        ...

    async def close(self) -> None:
        """Release everything. Safe to call twice, and after a failed open."""
        ...


# ---- optional capabilities: the hub checks them with isinstance when it builds a mapping ---------------------


@runtime_checkable
class BatchInfoSource(Protocol):
    """A stream source that describes a given-up batch in AWS's on-failure record. Without it the record has no
    batch info."""

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        """The part of AWS's on-failure record that describes these records (one lane, in order), e.g.
        `{"KinesisBatchInfo": {...}}` or `{"KafkaBatchInfo": {...}}`."""
        ...


@runtime_checkable
class FilterViewSource(Protocol):
    """A source whose records are filtered on something else than their payload. Without it (and without a
    `Record.filter_view` set up front) filter patterns see `Record.payload`."""

    def filter_view(self, record: Record) -> Mapping[str, Any]:
        """What filter patterns see of a record: its metadata, with its data parsed under the source's data key.
        Called only for mappings that have filters, so that the others never pay for parsing every record."""
        ...


@runtime_checkable
class ArnSource(Protocol):
    """A source whose events name an ARN (`eventSourceARN`): tumbling windows repeat it at the top of the event.
    Without it a window's `eventSourceARN` is empty."""

    def event_source_arn(self, lane: str) -> str:
        """The ARN the events of `lane` carry as `eventSourceARN` (a Kinesis or DynamoDB stream's ARN)."""
        ...


@runtime_checkable
class DeadLetterSource(Protocol):
    """A source with a dead-letter queue of its own (EventBridge Scheduler's target DeadLetterConfig): an
    asynchronous invocation it gives up on goes there, beside the function's dead-letter queue."""

    @property
    def dead_letter_config(self) -> Any:
        """The destination config of its dead-letter queue (a `file` or `sqs` destination), or None: none."""
        ...

    def dead_letter(self, records: Sequence[Record], give_up: GiveUp) -> Document:
        """The document its dead-letter queue receives for records the dispatcher gave up on (with `attributes`:
        the queue's message attributes)."""
        ...


@runtime_checkable
class LagSource(Protocol):
    """A source that tells how far behind its lanes are (hub.records.Lag). Without it a mapping shows no lag."""

    async def lag(self) -> Mapping[str, Lag]:
        """The lag of each lane read now, by lane key (or by the name of what the broker measures as one when the
        lanes are finer: an SQS FIFO queue, whose lanes are message groups). Only what the broker tells cheaply:
        what reads bring back (a high watermark, MillisBehindLatest, a sent time: no work per record beyond a
        comparison) and a round trip or two per lane or queue. The hub calls it every few seconds
        (hub.history.LAG_EVERY), never twice at once, with a timeout; {} while not open. Raising means "unknown"
        and never affects the mapping."""
        ...


@runtime_checkable
class TraceSource(Protocol):
    """A source whose records may carry a trace context: with the `otel` extra each invocation is a span that
    continues it (hub.tracing); without the extra this is never called."""

    def trace_context(self, record: Record) -> Mapping[str, str] | None:
        """The record's W3C trace context, `{"traceparent": ..., "tracestate": ...}` (tracestate optional), or
        None. A broker's own format is converted (SQS's X-Ray `AWSTraceHeader`: hub.tracing.xray_to_traceparent)."""
        ...


@dataclass(slots=True)
class SourceContext:
    """What the hub hands a connector when it builds a source."""

    mapping: str
    """The mapping's name: checkpoints live under it (`scope`), and it is the group of its leases."""
    store: CheckpointStore
    """The checkpoint store (hub.store): positions go here, under `scope(...)`. A source run under a
    lease gets a store that adds the lease's fence to every write (hub.exclusive.FencedStore)."""
    region: str
    """The hub's `region`, for events and ARNs."""
    account_id: str
    """The hub's `account_id`, for ARNs."""
    clock: Clock = field(default_factory=SystemClock)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("hub.source"))
    max_in_flight: int = 1
    """The most batches of this mapping in flight at once (its `max_concurrency`). An unordered lane is read
    again while earlier batches are unsettled: a source whose broker caps unsettled deliveries (a prefetch count,
    FIFO messages held back) must let at least this many batches' records be read and unsettled at once, or the
    mapping runs below its concurrency."""
    leases: Leases = field(default_factory=LocalLeases)
    """This hub's leases (hub.leases), for a source whose spec says `leases="lanes"`: it declares its lanes with
    `want(mapping, names)`, reads a lane only once `wait_for` gave its lease and while `lease.valid()`, writes that
    lane's checkpoints with `store.put_many(..., fence=lease.fence)`, stops reading when `lease.ended` is set and
    then, once what it read has settled, calls `give_back` (or `finish` when the lane is over for good, a closed
    shard). Over a store of one process, every lease is granted at once and never ends."""
    poller: int = 1
    """Which of the mapping's pollers this process is (1: the hub's own; 2..N: `provisioned_poller_config`
    children), for a source that must name each consumer apart and stably (an MQTT client id)."""
    health: Health = field(default_factory=Health)
    """The mapping's health (hub.health). A connector whose client library retries inside and never raises reports
    what it sees here (`fail`/`ok`), or bounds its own broker calls with `watch`, so that /healthz tells the truth."""
    retry_delay: float = 1.0
    maximum_retry_delay: float = 300.0
    """The mapping's `retry_delay` and `maximum_retry_delay`: see `retry_after`."""

    def retry_after(self, attempt: int) -> float:
        """How long a queue source whose broker can delay a redelivery (NATS's nak with a delay) keeps a record that
        failed its `attempt`-th delivery away: the mapping's backoff, `retry_delay` doubled per attempt up to
        `maximum_retry_delay`, with jitter (hub.backoff.Backoff, as the dispatcher waits between retries)."""
        return Backoff(self.retry_delay, self.maximum_retry_delay).delay(attempt)

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
    """How logs name it (`sqs:<url>`, `file:<path>`): never a secret."""
    per_record: bool
    """True: the dispatcher sends one document per record (a Kafka topic keeps each record's key);
    False: one document per given-up batch, as AWS sends to SQS, SNS and S3."""
    includes_payload: bool
    """True: documents carry the whole event as `payload` (AWS does so for S3 and Kafka destinations)."""

    async def send(self, documents: Sequence[Document]) -> None:
        """Store every document durably, or raise (the dispatcher retries with backoff)."""
        ...

    async def close(self) -> None:
        """Release its client. Called once, when the hub stops."""
        ...


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
    dead_letter: bool = False
    """True: it can be a dead-letter queue (a function's `dead_letter_config`): its `send` delivers a document's
    `attributes` with its body, as SQS message attributes do."""
    inbox: Callable[[Any, str, CheckpointStore, str], Any] | None = None
    """Reads it back for the console and replays: makes a hub.readback.Inbox from its validated config, the hub's
    region, the checkpoint store and the mapping's name. None: it cannot be read back."""


@dataclass(frozen=True, slots=True)
class MappingFacts:
    """What a ConnectorSpec's `check` learns of the mapping besides its source config."""

    pollers: int
    """The processes that will run the mapping (`provisioned_poller_config.minimum_pollers`, else 1)."""
    max_receive_count: int | None = None
    """Queue sources: after how many deliveries the mapping gives a record up (None: never)."""
    has_destination: bool = False
    """Whether the mapping has a `destination_config.on_failure`."""


Leasing = Literal["source", "lanes"]


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """A connector as the registry knows it.

    type          the `type:` users write in YAML
    config        its pydantic model (with `type: Literal[...]`, extra="forbid")
    build         makes a Source from a validated config and a SourceContext (sync sources: see `serve`)
    family        how AWS invokes functions for this source: it decides the dispatcher's policy and which
                  mapping settings apply
    summary       one line for the generated reference
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
    """The connector's own defaults of mapping settings, by the setting's name (`batch_size`,
    `maximum_batching_window`, `maximum_retry_attempts`, `max_concurrency`, ...): a mapping that does not set one
    gets this, else the family's default (AWS's)."""
    retries_with_destination: int | None = None
    """What an unlimited `maximum_retry_attempts` (-1, a stream's default) becomes once the mapping has an
    on-failure destination (AWS: 10 for Kafka); None: it stays unlimited."""
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
    shares_work_when: str = ""
    """For a `shares_work` that depends on the config: what makes it share, in the words of the error a mapping
    with pollers gets otherwise (mqtt: "set `shared_group` (an MQTT 5 shared subscription)")."""
    leases: Leasing | Callable[[Any], Leasing | None] | None = None
    """How hubs that share a store (and the pollers of one mapping) share this source's work when its broker does
    not (`shares_work` False): `source`, its whole work is one unit that one hub at a time runs under a lease (a
    schedule, a folder: the hub wraps it in hub.exclusive.LeasedSource, which opens it only while it holds the
    lease and gives the lease back once what it read has settled); `lanes`, it takes a lease per lane itself
    through `SourceContext.leases` (shards; see there); or a function of the validated config that says which.
    None: every hub would read the same records, and pollers are refused."""
    check: Callable[[Any, MappingFacts], None] | None = None
    """Rules of the connector about a mapping, beyond what its config model checks alone: called with the
    validated source config when a configuration is loaded; raises SettingError (its path relative to the source
    config) to refuse it. Redis: a fixed `consumer_name` cannot serve several pollers; NATS: `max_deliver` needs a
    smaller `max_receive_count` and a destination, so that JetStream never drops a message the destination did not
    take."""
    sample_variants: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """The other forms of the event the source emits, by name, as settings choose them (kafka's `msk`, schedule's
    `scheduler`): `hub events SOURCE NAME` prints one."""
    buckets: Callable[[Any], dict[str, str]] | None = None
    """The local folders a source's validated config presents as S3 buckets, {bucket name: absolute folder}: the
    hub's S3 endpoint serves them, so functions can read the objects their events name (`files`)."""
    serve: Callable[[Any], Any] | None = None
    """Sync sources only: makes the one server (hub.sync.SyncServer) that serves every mapping of this type, from
    a hub.sync.SyncContext; `build` then makes what that server needs of one mapping (its route: a
    hub.sync.SyncRoute, whose `lane` /status lists)."""
    batch_info_key: str | None = None
    """The key of the batch info its `batch_info` gives (`KinesisBatchInfo`): where a failure record names the
    records it stands for by their positions."""
    reread: Callable[[Any, SourceContext, dict[str, Any]], Awaitable[Any]] | None = None
    """Replays of failure records that hold no event: from a validated config, a context and the batch info under
    `batch_info_key`, the event of those records read again from the stream (hub.replay); raises
    hub.readback.Gone when the stream no longer holds them."""
    resolve: Callable[[Any], ConnectorSpec] | None = None
    """The spec that holds for one validated config, when a setting changes what kind of source it is (the `memory`
    connector's `mode: queue` makes it a queue: another family, so another policy and other settings). None: this
    spec holds for every config."""
