"""The `postgres` source: one replication connection per mapping, its pgoutput messages decoded into records and
routed to the lanes (see the package docstring for the contract)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec

from connectors.postgres.admin import Admin, TableInfo
from connectors.postgres.config import PostgresConfig
from connectors.postgres.encoded import record_encoder, the_long_way
from connectors.postgres.events import Table, key_columns, table_arn
from connectors.postgres.lag import SlotLag
from connectors.postgres.lanes import SEQUENCE_SHIFT, TableLane, Transaction, Transactions
from connectors.postgres.pgoutput import Begin, Commit, Relation, Truncate, decode
from connectors.postgres.replication import ReplicationStream
from connectors.postgres.values import Types
from connectors.shards import iso
from hub.backoff import await_unless
from hub.leases import Lease
from hub.logs import fields
from hub.records import Lag, Record
from hub.source import SourceContext

_payload = operator.attrgetter("payload")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_CHANGES = frozenset(b"IUD")
YIELD_EVERY = 64
"""Messages read between two yields to the event loop while the stream has more at once (about 0.4 ms)."""
TURNS = 4
"""Turns of the event loop given up at each yield: a batch's dispatch takes several (its answer, the settle, the
next batch's task, its write to the environment), each waiting for the reader's next yield; giving up a few in a
row lets a whole dispatch go ahead of the next burst of reading, so that the function runs while the hub reads
instead of after. Measured with one lane (bench/postgres_bench.py): the hub's process went from 26 % idle to 15 %."""


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
        self._f = fields(mapping=context.mapping, slot=self.slot)
        self._admin = Admin(config, self.log, self._f)
        self._lag = SlotLag(self._admin, self.slot, context.mapping, self.log)
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
        self._created_json = b"0.0"
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
        self._tasks = [
            asyncio.ensure_future(self._pump(stream)),
            asyncio.ensure_future(self._lag.watch(config.lag_interval, lambda: self._buffered)),
        ]

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
        """The DynamoDB Streams-shaped event: `{"Records": [...]}`, each record its JSON already (msgspec.Raw, see
        hub.records.plain)."""
        return {"Records": list(map(_payload, records))}

    def filter_view(self, record: Record) -> Mapping[str, Any]:
        """The record itself, decoded: filters see what the function gets (only mappings with filters decode)."""
        view: Mapping[str, Any] = _decode(record.payload)
        return view

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
                "streamArn": self.event_source_arn(records[0].lane),
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
        """The slot's lag now (SlotLag.read)."""
        return await self._lag.read()

    @property
    def lag_bytes(self) -> int | None:
        """Bytes of WAL the slot holds past its confirmed LSN, as last read (None: not read yet)."""
        return self._lag.bytes

    def last_lag(self) -> dict[str, Any]:
        """The slot's lag as last read (every `lag_interval`), without a query: what a status page shows."""
        return self._lag.last()

    # ---- settling --------------------------------------------------------------------------------------------

    def settled(self, lane: TableLane, records: Sequence[Record], dropped: int = 0) -> None:
        """Records of `lane` settled (the slot may move past them once every earlier change has settled too), and
        `dropped` failed ones of an ended lane no longer held."""
        if lane.session != self._session or self._stream is None:
            return  # a lane of a connection closed since: the new one reads from the slot's confirmed LSN
        self._buffered -= len(records) + dropped
        if self._buffered <= self.config.max_buffered // 2:
            self._room.set()  # reading resumes once half the buffer has settled: see _pump
        self._txns.settled(records)

    def _confirm(self, lsn: int) -> None:
        if self._stream is not None:
            self._stream.confirm(lsn)

    # ---- reading the stream ----------------------------------------------------------------------------------

    async def _pump(self, stream: ReplicationStream) -> None:
        """Read and route messages until cancelled; every wait is bounded by the status interval, and the
        connection is kept (status updates) while the lanes are full.

        Once `max_buffered` changes are held, reading waits until half of them have settled, rather than going on
        as soon as one batch has: refilled one batch at a time, the refill ran between a batch's answer and the
        next batch's dispatch, so the function and the reading took turns instead of overlapping."""
        interval = self.config.status_interval
        limit = self.config.max_buffered
        burst = 0
        while True:
            if self._buffered >= limit:
                stream.heard()  # not reading by choice: silence means nothing now
                stream.keep_alive()
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):  # no task, as wait_for makes
                        await self._room.wait()
                continue
            item = stream.read_now()
            if item is None:
                await stream.wait(interval)
                continue
            data = item[1]
            if data[0] in _CHANGES:  # nearly every message: straight to its record
                self._change(data)
            else:
                message = decode(data)
                if isinstance(message, Relation):
                    await self._relation(message)
                else:
                    self._route(message)
            burst += 1
            if burst >= YIELD_EVERY:  # a long backlog: let the lanes and the status updates in
                burst = 0
                stream.heard()
                stream.keep_alive()
                for _ in range(TURNS):
                    await asyncio.sleep(0)

    def _route(self, message: Any) -> None:
        """A message other than a change or a relation: a transaction's bounds, a truncate."""
        if isinstance(message, Begin):
            self._txn = self._txns.begin(message.final_lsn)
            self._commit_time = message.commit_time
            self._created = round(message.commit_time, 3)
            self._created_json = _encode(self._created)
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

    def _change(self, data: bytes) -> None:
        """An Insert, Update or Delete message: its record, to its lane. The table's encoder writes the record's
        JSON from the message itself; what it leaves (None) is decoded and laid out the long way."""
        txn = self._txn
        relation = int.from_bytes(data[1:5], "big")
        table = self._tables.get(relation)
        if txn is None or table is None:
            decode(data)  # a message cut short raises ProtocolError here
            raise ValueError(f"a change of relation {relation} outside a transaction or before its Relation")
        self._index += 1
        if not table.wanted:
            return
        sequence = self._base + self._index
        lane = table.lane
        if lane is not None and sequence <= lane.checkpoint:
            return  # settled before the restart; the slot's confirmed LSN had not moved past it yet
        item = str(sequence)
        size = len(data)
        encoded = table.encode(data, sequence, self._created_json, size) or the_long_way(
            table, data, sequence, self._created, self._view, self._region
        )
        payload, key_json = encoded
        if lane is None:  # key-hash lanes
            lane = self._lanes[f"{table.qualified}#{zlib.crc32(key_json) % self.config.lanes_per_table}"]
            if sequence <= lane.checkpoint:
                return
        txn.open += 1
        self._buffered += 1
        both = data[0] == 0x55 and data[5] == 0x4F  # an Update with the old row (`O`): both images
        lane.push(
            Record(
                lane.key,
                sequence,
                msgspec.Raw(payload),
                timestamp=self._commit_time,
                size=size + (table.extra_size_both if both else table.extra_size),
                item_id=item,
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
        context = self.context
        arn = table_arn(
            context.region, context.account_id, self.config.database, relation.schema, relation.name, self.slot
        )
        converters = [self._types.converter(c.type_oid) for c in relation.columns]
        table = Table(relation, converters, key_columns(relation, info.primary_key if info else ()), arn, wanted)
        table.encode = record_encoder(table, self._view, self._region)
        if wanted and self.config.lanes_per_table == 1:
            table.lane = self._lanes.get(table.qualified)
        self._tables[relation.oid] = table


def _lane_keys(table: str, lanes: int) -> list[str]:
    return [table] if lanes == 1 else [f"{table}#{i}" for i in range(lanes)]
