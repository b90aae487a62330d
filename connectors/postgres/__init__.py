"""`postgres`: row changes of PostgreSQL tables through logical replication, as DynamoDB Streams records.

| settle   | meaning for PostgreSQL                                                                                 |
| -------- | ------------------------------------------------------------------------------------------------------ |
| success  | the lane's highest contiguous settled sequence number is checkpointed in the hub's store; the slot is  |
|          | confirmed (standby status update, `confirmed_flush_lsn`) up to the end of the newest transaction      |
|          | before which every change of every lane has settled                                                    |
| failure  | only when the hub stops mid-retry (or a dispatch fault): the lane reads the failed records again first |
| ordering | per table, in commit order (per primary key with `lanes_per_table` > 1, or `parallelization_factor`)  |

How it reads: a publication names the tables and a logical replication slot (plugin `pgoutput`) keeps the position;
both are created on request (`create: true`). One replication connection streams the slot (`START_REPLICATION ...
(proto_version '1', publication_names '...')`); each Insert, Update and Delete becomes a record
(connectors/postgres/events.py) pushed into the lane of its table. The record is its JSON, written straight from
the message by a function made for the table (connectors/postgres/encoded.py); a change it does not take (an
unchanged TOASTed value, a text that is not UTF-8) is decoded and laid out the long way, with the same result. The
position is the slot's: nothing after its confirmed LSN is ever removed by the server, so a hub killed mid-stream
loses nothing. Changes the lanes settled after the last confirmed LSN come again on reconnection, and each lane
skips those at or below its own checkpoint: what is delivered twice is bounded by what was in flight (read, not
settled) at the kill.

Why psycopg2: psycopg 3 has no replication protocol (psycopg/psycopg#71 is open) and asyncpg has none either, while
psycopg2's `LogicalReplicationConnection` is maintained, speaks the protocol through libpq (every authentication
method, TLS) and has an asynchronous mode driven here by the event loop's readiness callbacks, without a thread
(connectors/postgres/replication.py). The only library for pgoutput's messages, pypgoutput, was last released in
2022 and reads through psycopg2's blocking loop; the messages are simple, so connectors/postgres/pgoutput.py decodes
them. The SQL side (the publication, the slot, keys, types, the lag) uses asyncpg, as the hub's PostgreSQL store
does (connectors/postgres/admin.py).

Several hubs: the slot can be streamed by one connection at a time, so the source takes one lease on it (through
`SourceContext.leases`): with a shared store, one hub streams it and another takes over when that one dies.
Back-pressure: at most `max_buffered` changes are held; past that the hub reads nothing more (the database keeps the
rest) until half of them have settled, but still sends status updates, so the server keeps the connection. The
slot's lag (WAL bytes past its confirmed LSN) is read every `lag_interval`, logged, and available from `lag()`.
"""

from __future__ import annotations

from connectors.postgres.config import PostgresConfig
from connectors.postgres.events import sample_event
from connectors.postgres.source import PostgresSource
from hub.source import ConnectorSpec

CONNECTOR = ConnectorSpec(
    type="postgres",
    config=PostgresConfig,
    build=PostgresSource,
    family="stream",
    summary="PostgreSQL row changes through logical replication (pgoutput), as DynamoDB Streams records: one ordered "
    "lane per table, the slot confirmed only past settled changes.",
    sample_event=sample_event,
    data_key="dynamodb",
    defaults={"batch_size": 100, "maximum_batching_window": 0.0},
    requires=("psycopg2", "asyncpg"),
    extra="postgres",
    leases="lanes",  # one lease, on the slot: one hub streams it at a time
)

__all__ = ["CONNECTOR", "PostgresConfig", "PostgresSource", "sample_event"]
