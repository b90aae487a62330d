"""The `postgres` source: one replication connection per mapping, its pgoutput messages decoded into records and
routed to the lanes (see the package docstring for the contract)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from connectors.postgres.admin import Admin, TableInfo
from connectors.postgres.config import PostgresConfig
from connectors.postgres.events import Table, stream_record, table_arn
from connectors.postgres.lanes import SEQUENCE_SHIFT, TableLane, Transaction, Transactions
from connectors.postgres.pgoutput import Begin, Change, Commit, Relation, Truncate, decode
from connectors.postgres.replication import ReplicationStream
from connectors.postgres.values import Types
from connectors.shards import iso
from hub.backoff import await_unless
from hub.leases import Lease
from hub.logs import fields
from hub.records import Lag, Record
from hub.source import SourceContext

_payload = operator.attrgetter("payload")
YIELD_EVERY = 256
"""Messages decoded between two returns to the event loop while the stream has more at once."""


class PostgresSource:
    """PostgreSQL tables through a logical replication slot: one ordered lane per table (or per key hash of it), the
    slot confirmed as far as every lane has settled."""

    def __init__(self, config: PostgresConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.log: logging.Logger = context.log
        self.store = context.store
        self.slot = config.slot_name(context.mapping)
        self.publication = config.publication_name(context.mapping)
        self.scope = context.scope("postgres", config.database, self.slot)
        self.fence: Any = None
        self.lag_bytes: int | None = None
        """Bytes of WAL the slot holds past its confirmed LSN, as last read (None: not read yet)."""
        self._f = fields(mapping=context.mapping, slot=self.slot)
        self._admin = Admin(config, self.log, self._f)
        self._types = Types()
        self._known: dict[tuple[str, str], TableInfo] = {}
        self._tables: dict[int, Table] = {}
        self._lanes: dict[str, TableLane] = {}
        self._checkpoints: dict[str, str] = {}
        self._stream: ReplicationStream | None = None
        self._txns = Transactions(self._confirm)
        self._txn: Transaction | None = None
        self._commit_time = 0.0
        self._created = 0.0
        self._index = 0
        self._base = 0  # the current transaction's commit LSN << SEQUENCE_SHIFT: its changes' sequence numbers + i
        self._view = config.stream_view_type
        self._region = context.region
        self._session = 0
        self._buffered = 0
        self._room = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._truncates: set[str] = set()
        self._arns: dict[str, str] = {}
        self._last_lag: dict[str, Any] = {}

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the database, create the publication and the slot (`create: true`). Streaming starts in `lanes()`,
        once this hub holds the slot's lease (the lanes' checkpoints are read then)."""
        self._closing.clear()
        await self._admin.connect()
        tables = await self._admin.prepare(self.slot, self.publication)
        self._known = {(t.schema, t.name): t for t in tables}
        self.context.leases.want(self.context.mapping, [self._lease_name])

    @property
    def _lease_name(self) -> str:
        return f"{self.scope}/slot"

    async def lanes(self) -> AsyncIterator[TableLane]:
        """The lanes of every table, each time this hub holds the slot's lease and the stream is started. Ends when
        the source closes; raises what stopped the stream. A lease that ends (lost, or moved to another hub) stops
        the stream, and the source waits for it again."""
        while not self._closing.is_set():
            lease = await await_unless(
                self._closing, self.context.leases.wait_for(self.context.mapping, self._lease_name)
            )
            if lease is None:
                return
            self.fence = lease.fence
            try:
                await self._start()
                for lane in list(self._lanes.values()):
                    yield lane
                reader = self._tasks[0]
                ended = asyncio.ensure_future(lease.ended.wait())
                try:
                    await await_unless(
                        self._closing, asyncio.wait((reader, ended), return_when=asyncio.FIRST_COMPLETED)
                    )
                finally:
                    ended.cancel()
                failure = reader.exception() if reader.done() and not reader.cancelled() else None
                if failure is not None:
                    raise failure
            finally:
                await self._end(lease)

    async def _start(self) -> None:
        config = self.config
        # read under the lease: a hub taking over finds what the previous holder checkpointed
        self._checkpoints = await self.store.get_all(self.scope)
        self._session += 1  # settles of the lanes of an earlier stream no longer count for this one
        self._lanes = {}
        context = self.context
        for schema, name in config.table_names():
            self._arns[f"{schema}.{name}"] = table_arn(
                context.region, context.account_id, config.database, schema, name, self.slot
            )
            for key in _lane_keys(f"{schema}.{name}", config.lanes_per_table):
                checkpoint = self._checkpoints.get(key)
                self._lanes[key] = TableLane(self, key, int(checkpoint) if checkpoint else None, self._session)
        self._txns = Transactions(self._confirm)
        self._tables.clear()
        self._buffered = 0
        self._room.set()
        stream = ReplicationStream(
            config.url,
            config.secret,
            self.slot,
            self.publication,
            status_interval=config.status_interval,
            receive_timeout=config.receive_timeout,
            connect_timeout=config.connect_timeout,
        )
        self._stream = stream
        await stream.start()
        self.log.info(
            "streaming slot %s of %s (publication %s)",
            self.slot,
            config.database,
            self.publication,
            extra=fields(mapping=self.context.mapping, lanes=len(self._lanes), checkpoints=len(self._checkpoints)),
        )
        self._tasks = [asyncio.ensure_future(self._pump(stream)), asyncio.ensure_future(self._watch_lag())]

    async def _end(self, lease: Lease) -> None:
        """Stop reading; the lanes end; with a revoked lease, give it back once what was read has settled."""
        for task in self._tasks[1:]:
            task.cancel()
        reader = self._tasks[0] if self._tasks else None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        self._end_lanes()
        if lease.revoked:
            while self._buffered > 0 and not self._closing.is_set():
                self._room.clear()
                await await_unless(self._closing, self._room.wait())
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        self.fence = None
        await self.context.leases.give_back(lease)

    def _end_lanes(self) -> None:
        for lane in self._lanes.values():
            if not lane.ended:
                self._buffered -= lane.end()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The DynamoDB Streams-shaped event: `{"Records": [...]}`."""
        return {"Records": list(map(_payload, records))}

    def event_source_arn(self, lane: str) -> str:
        """The `eventSourceARN` of the records of `lane` (its table's), which tumbling windows repeat."""
        return self._arns.get(lane.split("#", 1)[0], "")

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        """`DDBStreamBatchInfo`, with the lane as the shard and the table's stream ARN."""
        return {
            "DDBStreamBatchInfo": {
                "shardId": records[0].lane,
                "startSequenceNumber": str(records[0].item_id),
                "endSequenceNumber": str(records[-1].item_id),
                "approximateArrivalOfFirstRecord": iso(records[0].timestamp),
                "approximateArrivalOfLastRecord": iso(records[-1].timestamp),
                "batchSize": len(records),
                "streamArn": records[0].payload["eventSourceARN"],
            }
        }

    async def close(self) -> None:
        """Stop streaming; the last confirmed LSN is sent before the connection closes."""
        self._closing.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._end_lanes()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        await self._admin.close()

    async def lag(self) -> dict[str, Lag]:
        """The LagSource capability: the slot's lag as every lane's (`replication_lag_bytes`: one slot feeds them
        all), for /status, /metrics and the history. {} while the slot is not known."""
        found = await self.slot_lag()
        if "slot_lag_bytes" not in found:
            return {}
        return {
            lane: Lag(replication_lag_bytes=int(found["slot_lag_bytes"])) for lane in list(self._lanes) or [self.slot]
        }

    async def slot_lag(self) -> dict[str, Any]:
        """The slot's lag now: `{"slot_lag_bytes": N, "slot_active": bool}` (empty when the slot is gone), read from
        `pg_replication_slots` (`pg_current_wal_lsn() - confirmed_flush_lsn`)."""
        found = await self._admin.lag(self.slot)
        if found is None:
            self._last_lag = {}
            return {}
        self.lag_bytes = found[0]
        self._last_lag = {"slot_lag_bytes": found[0], "slot_active": found[1]}
        return dict(self._last_lag)

    def last_lag(self) -> dict[str, Any]:
        """The slot's lag as last read (every `lag_interval`), without a query: what a status page shows. Empty
        before the first read."""
        return dict(self._last_lag)

    # ---- settling --------------------------------------------------------------------------------------------

    def settled(self, lane: TableLane, records: Sequence[Record], dropped: int = 0) -> None:
        """Records of `lane` settled (the slot may move past them once every earlier change has settled too), and
        `dropped` failed ones of an ended lane no longer held."""
        if lane.session != self._session or self._stream is None:
            return  # a lane of a connection closed since: the new one reads from the slot's confirmed LSN
        self._buffered -= len(records) + dropped
        if self._buffered < self.config.max_buffered:
            self._room.set()
        self._txns.settled(records)

    def _confirm(self, lsn: int) -> None:
        if self._stream is not None:
            self._stream.confirm(lsn)

    # ---- reading the stream ----------------------------------------------------------------------------------

    async def _pump(self, stream: ReplicationStream) -> None:
        """Read and route messages until cancelled; every wait is bounded by the status interval, and the
        connection is kept (status updates) while the lanes are full."""
        interval = self.config.status_interval
        limit = self.config.max_buffered
        burst = 0
        while True:
            if self._buffered >= limit:
                stream.heard()  # not reading by choice: silence means nothing now
                stream.keep_alive()
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):  # once per settled batch: no task, as wait_for makes
                        await self._room.wait()
                continue
            item = stream.read_now()
            if item is None:
                await stream.wait(interval)
                continue
            data = item[1]
            message = decode(data)
            if type(message) is Change:  # nearly every message: straight to it
                self._change(message, len(data))
            elif isinstance(message, Relation):
                await self._relation(message)
            else:
                self._route(message)
            burst += 1
            if burst >= YIELD_EVERY:  # a long backlog: let the lanes and the status updates in
                burst = 0
                stream.heard()
                stream.keep_alive()
                await asyncio.sleep(0)

    def _route(self, message: Any) -> None:
        """A message other than a change or a relation: a transaction's bounds, a truncate."""
        if isinstance(message, Begin):
            self._txn = self._txns.begin(message.final_lsn)
            self._commit_time = message.commit_time
            self._created = round(message.commit_time, 3)
            self._index = 0
            self._base = message.final_lsn << SEQUENCE_SHIFT
        elif isinstance(message, Commit):
            if self._txn is not None:
                self._txns.commit(self._txn, message.end_lsn)
            self._txn = None
        elif isinstance(message, Truncate):
            for oid in message.relations:
                table = self._tables.get(oid)
                name = table.qualified if table else str(oid)
                if name not in self._truncates:
                    self._truncates.add(name)
                    self.log.warning("TRUNCATE of %s is not an item change: not delivered", name, extra=self._f)

    def _change(self, change: Change, size: int) -> None:
        txn = self._txn
        table = self._tables.get(change.relation)
        if txn is None or table is None:
            raise ValueError(
                f"a change of relation {change.relation} outside a transaction or before its Relation "
                f"(txn {txn}, tables {sorted(self._tables)})"
            )
        self._index += 1
        if not table.wanted:
            return
        sequence = self._base + self._index
        lane = table.lane
        if lane is not None and sequence <= lane.checkpoint:
            return  # settled before the restart; the slot's confirmed LSN had not moved past it yet
        payload, key_json = stream_record(table, change, sequence, self._created, self._view, self._region, size)
        if lane is None:  # key-hash lanes
            lane = self._lanes[f"{table.qualified}#{zlib.crc32(key_json) % self.config.lanes_per_table}"]
            if sequence <= lane.checkpoint:
                return
        txn.open += 1
        self._buffered += 1
        both = change.old_kind == "O" and change.new is not None
        lane.push(
            Record(
                lane.key,
                sequence,
                payload,
                timestamp=self._commit_time,
                size=size + (table.extra_size_both if both else table.extra_size),
                item_id=payload["dynamodb"]["SequenceNumber"],
                order_key=key_json,
            )
        )

    async def _relation(self, relation: Relation) -> None:
        """A table's columns (sent before its first change, and after it changes): its conversions and key."""
        missing = self._types.missing(c.type_oid for c in relation.columns)
        if missing:
            self._types.learn(await self._admin.types(missing))
        info = self._known.get((relation.schema, relation.name))
        wanted = info is not None
        if info is None or info.oid != relation.oid:
            info = await self._admin.table(relation.schema, relation.name)
        names = [c.name for c in relation.columns]
        primary = info.primary_key if info and all(k in names for k in info.primary_key) else ()
        keys = (
            tuple(names.index(k) for k in primary)
            if primary
            else tuple(i for i, c in enumerate(relation.columns) if c.key)
        )
        arn = table_arn(
            self.context.region,
            self.context.account_id,
            self.config.database,
            relation.schema,
            relation.name,
            self.slot,
        )
        converters = [self._types.converter(c.type_oid) for c in relation.columns]
        table = Table(relation, converters, keys, arn, wanted)
        if wanted and self.config.lanes_per_table == 1:
            table.lane = self._lanes.get(table.qualified)
        self._tables[relation.oid] = table

    # ---- the slot's lag --------------------------------------------------------------------------------------

    async def _watch_lag(self) -> None:
        """Read the slot's lag every `lag_interval`, for /status and the log (a failed read is logged, not fatal:
        the stream does not depend on it)."""
        while True:
            try:
                lag = await self.slot_lag()
            except Exception as exc:
                self.log.warning("reading the slot's lag failed: %s", exc, extra=self._f)
            else:
                self.log.info(
                    "slot lag %s bytes",
                    lag.get("slot_lag_bytes", "?"),
                    extra=fields(mapping=self.context.mapping, slot=self.slot, buffered=self._buffered, **lag),
                )
            started = time.monotonic()
            await asyncio.sleep(max(0.0, self.config.lag_interval - (time.monotonic() - started)))


def _lane_keys(table: str, lanes: int) -> list[str]:
    return [table] if lanes == 1 else [f"{table}#{i}" for i in range(lanes)]
