"""The SQL side of the `postgres` source, over an ordinary connection (asyncpg): checking the server, creating the
publication and the slot on request, the tables' primary keys, the types the stream names, and the slot's lag.
Every query is bounded by `connect_timeout`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from connectors.postgres.config import PostgresConfig, quote_ident
from connectors.postgres.values import TYPE_QUERY

KEY_QUERY = """
SELECT c.oid, c.relreplident::text,
       ARRAY(SELECT a.attname FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord) AS primary_key
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
"""


class SetupError(RuntimeError):
    """The database cannot serve the mapping as configured: says what to change."""


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A published table as the catalog describes it: its name, oid, replica identity and primary key."""

    schema: str
    name: str
    oid: int
    identity: str
    """relreplident: `d` default, `f` full, `i` index, `n` nothing."""
    primary_key: tuple[str, ...]


class Admin:
    """An ordinary connection to the database the slot streams."""

    def __init__(self, config: PostgresConfig, log: logging.Logger, fields: dict[str, Any]) -> None:
        self.config = config
        self.log = log
        self.fields = fields
        self.conn: Any = None
        self._lock = asyncio.Lock()  # one query at a time on the connection (the stream's and the lag's)

    async def connect(self) -> None:
        """Open the ordinary (not replication) connection the catalog queries use."""
        import asyncpg

        config = self.config
        self.conn = await asyncpg.connect(config.url, password=config.secret, timeout=config.connect_timeout)

    async def close(self) -> None:
        """Close the connection (terminated if it does not close within the connect timeout). Safe to call twice."""
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await conn.close(timeout=self.config.connect_timeout)
            except Exception:
                conn.terminate()

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._lock:
            return list(await self.conn.fetch(sql, *args, timeout=self.config.connect_timeout))

    async def _execute(self, sql: str) -> None:
        async with self._lock:
            await self.conn.execute(sql, timeout=self.config.connect_timeout)

    async def prepare(self, slot: str, publication: str) -> list[TableInfo]:
        """Check the server and the tables; create what `create: true` asks for; the tables' keys and identities."""
        (level,) = (await self._fetch("SHOW wal_level"))[0]
        if level != "logical":
            raise SetupError(
                f"the server's wal_level is {level!r}: logical replication needs `wal_level = logical` "
                "(ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL)"
            )
        tables = [await self._table(schema, name) for schema, name in self.config.table_names()]
        await self._publication(publication, tables)
        await self._slot(slot)
        return [await self._identity(t) for t in tables]

    async def _table(self, schema: str, name: str) -> TableInfo:
        rows = await self._fetch(KEY_QUERY, schema, name)
        if not rows:
            raise SetupError(f"there is no table {schema}.{name} in database {self.config.database!r}")
        oid, identity, key = rows[0]
        return TableInfo(schema, name, int(oid), str(identity), tuple(key))

    async def _publication(self, publication: str, tables: list[TableInfo]) -> None:
        listed = {
            (row[0], row[1])
            for row in await self._fetch(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", publication
            )
        }
        exists = bool(await self._fetch("SELECT 1 FROM pg_publication WHERE pubname = $1", publication))
        names = ", ".join(f"{quote_ident(t.schema)}.{quote_ident(t.name)}" for t in tables)
        if not exists:
            if not self.config.create:
                raise SetupError(f"there is no publication {publication!r} (create it, or set create: true)")
            await self._execute(
                f"CREATE PUBLICATION {quote_ident(publication)} FOR TABLE {names} "
                "WITH (publish = 'insert, update, delete')"
            )
            self.log.info("created publication %s for %s", publication, names, extra=self.fields)
            return
        missing = [t for t in tables if (t.schema, t.name) not in listed]
        if missing and not self.config.create:
            named = ", ".join(f"{t.schema}.{t.name}" for t in missing)
            raise SetupError(f"publication {publication!r} does not include {named} (add them, or set create: true)")
        if missing:
            added = ", ".join(f"{quote_ident(t.schema)}.{quote_ident(t.name)}" for t in missing)
            await self._execute(f"ALTER PUBLICATION {quote_ident(publication)} ADD TABLE {added}")
            self.log.info("added %s to publication %s", added, publication, extra=self.fields)

    async def _slot(self, slot: str) -> None:
        rows = await self._fetch("SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1", slot)
        if rows:
            plugin, database = rows[0]
            if plugin != "pgoutput" or database != self.config.database:
                raise SetupError(
                    f"replication slot {slot!r} is one of plugin {plugin!r} on database {database!r}, not pgoutput "
                    f"on {self.config.database!r}: name another slot"
                )
            return
        if not self.config.create:
            raise SetupError(f"there is no replication slot {slot!r} (create it with pgoutput, or set create: true)")
        # waits for the transactions running at this moment to end (bounded by connect_timeout)
        await self._fetch("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
        self.log.info("created replication slot %s (pgoutput): changes from now on are read", slot, extra=self.fields)

    async def _identity(self, table: TableInfo) -> TableInfo:
        old_images = self.config.stream_view_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
        if table.identity == "f" or not old_images:
            return table
        if self.config.replica_identity_full:
            name = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
            await self._execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
            self.log.info("set REPLICA IDENTITY FULL on %s.%s", table.schema, table.name, extra=self.fields)
            return TableInfo(table.schema, table.name, table.oid, "f", table.primary_key)
        self.log.warning(
            "%s.%s has no REPLICA IDENTITY FULL: its updates and deletes come without OldImage (set "
            "replica_identity_full: true, or ALTER TABLE ... REPLICA IDENTITY FULL)",
            table.schema,
            table.name,
            extra=self.fields,
        )
        return table

    async def types(self, oids: list[int]) -> list[tuple[int, str, int, int, str | None]]:
        """(oid, name, category, element oid, ...) of each of these types, from the catalog (TYPE_QUERY)."""
        rows = await self._fetch(TYPE_QUERY, oids)
        return [(int(r[0]), str(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows]

    async def table(self, schema: str, name: str) -> TableInfo | None:
        """A table's keys as they are now (a table the stream names that was not known at start)."""
        rows = await self._fetch(KEY_QUERY, schema, name)
        if not rows:
            return None
        oid, identity, key = rows[0]
        return TableInfo(schema, name, int(oid), str(identity), tuple(key))

    async def lag(self, slot: str) -> tuple[int, bool] | None:
        """(bytes of WAL between the server's current position and the slot's confirmed LSN, whether a connection
        streams the slot), or None when the slot is gone."""
        rows = await self._fetch(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, active "
            "FROM pg_replication_slots WHERE slot_name = $1",
            slot,
        )
        if not rows:
            return None
        return int(rows[0][0] or 0), bool(rows[0][1])
