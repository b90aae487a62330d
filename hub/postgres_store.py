"""The PostgreSQL checkpoint store: checkpoints, leases and members in one database, for several hubs.

`postgresql://user:password@host:port/db` (or `postgres://`); `?schema=NAME` keeps the tables in that schema
(created if missing), so that several sets of hubs, or tests, share one database apart. Every other parameter of
the URL is asyncpg's (`sslmode=require`, `application_name=hub-1`: `eventhub` by default). asyncpg is imported
only when this store is used.

Tables, created on first use (under an advisory lock, so that hubs starting together do not race):

- `checkpoints (scope, key, value)`, primary key (scope, key);
- `leases (name, grp, owner, token, expires)`: owner NULL when free, expires `-infinity` when released;
- `members (member, groups, expires, info)`.

Every expiry is compared with the server's `clock_timestamp()`, never with a time this process sends, and
`remaining` is computed by the server. A fenced write locks its lease row (`FOR SHARE`, only if owner, token and
expiry still hold) in the transaction that writes: a takeover (`acquire`, an UPDATE of that row) waits for the
write to commit, and a write that waited behind a takeover sees the new token and is refused.

Writes are group-committed: the put_many calls that arrive while a transaction runs go together into the next
one (their fences checked in one query; only those whose fence fails are refused). Reads and lease calls take
other connections of the pool, so they never wait behind the writer. Every network wait has a timeout
(`timeout`, 10 s), so an outage raises rather than hangs; no error names the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from hub.store import Fence, LeaseLost, LeaseRow, LeaseStore, MemberRow, redacted

SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
SETUP_LOCK = 0x6576656E74687562  # "eventhub": one advisory lock key for creating the tables
REMAINING = "greatest(-1e9, extract(epoch FROM expires) - extract(epoch FROM clock_timestamp()))::float8"
"""Seconds left before `expires`, in the server's clock (-1e9 for a released lease, whose expiry is -infinity)."""

_TABLES = """
CREATE TABLE IF NOT EXISTS checkpoints (
    scope text NOT NULL, key text NOT NULL, value text NOT NULL, PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS leases (
    name text PRIMARY KEY, grp text NOT NULL, owner text, token bigint NOT NULL DEFAULT 0,
    expires timestamptz NOT NULL DEFAULT '-infinity');
CREATE TABLE IF NOT EXISTS members (
    member text PRIMARY KEY, groups text[] NOT NULL, expires timestamptz NOT NULL, info jsonb NOT NULL);
"""


class StoreUnavailable(ConnectionError):
    """The store could not be reached (the message names its URL with any password masked)."""


@dataclass
class _Write:
    scope: str
    items: dict[str, str | None]
    fence: Fence | None
    done: asyncio.Future[None]


def split_url(url: str) -> tuple[str, str | None]:
    """(the DSN for asyncpg, the schema of `?schema=`, or None). ValueError for a schema that is no plain name."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    schema = schemas[-1] if schemas else None
    if schema is not None and not SCHEMA_NAME.match(schema):
        raise ValueError(f"schema={schema!r}: use a name of letters, digits and _ (at most 63)")
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore(LeaseStore):
    """Checkpoints, leases and members in PostgreSQL (the module docstring). Connects on first use."""

    def __init__(self, url: str, *, timeout: float = 10.0, pool_size: int = 4) -> None:
        self.url = url
        self.timeout = timeout
        self.pool_size = pool_size
        self._dsn, self.schema = split_url(url)
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._pending: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        """Transactions the writer committed (each holds every put_many that arrived while the previous ran)."""

    # ---- connections -------------------------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        message = f"{type(exc).__name__}: {exc}"
        password = urlsplit(self.url).password
        for form in {password, unquote(password or "")} - {None, ""}:  # as written in the URL, and decoded
            message = message.replace(str(form), "***")
        return StoreUnavailable(f"checkpoint store {redacted(self.url)}: {message}")

    async def _ready(self) -> Any:
        if self._pool is not None:  # also while close() lets the writer finish
            return self._pool
        if self._closed:
            raise RuntimeError("checkpoint store is closed")
        async with self._opening:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> Any:
        import asyncpg

        settings = {}
        if "application_name" not in dict(parse_qsl(urlsplit(self._dsn).query)):  # the URL's wins (else ours would)
            settings["application_name"] = "eventhub"
        if self.schema is not None:
            settings["search_path"] = f'"{self.schema}"'
        try:
            pool = await asyncio.wait_for(
                asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=self.timeout,
                    command_timeout=self.timeout,
                    server_settings=settings,
                ),
                self.timeout * 2,
            )
        except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._unavailable(exc) from None
        try:
            async with pool.acquire(timeout=self.timeout) as conn, conn.transaction():
                # CREATE ... IF NOT EXISTS still races on the catalog when two hubs start at once: serialise them.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SETUP_LOCK)
                if self.schema is not None:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(_TABLES)
        except BaseException:
            pool.terminate()
            raise
        return pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        pool = await self._ready()
        try:
            conn = await pool.acquire(timeout=self.timeout)
        except (OSError, TimeoutError) as exc:  # a new connection of the pool could not be made in time
            raise self._unavailable(exc) from None
        try:
            yield conn
        finally:
            await pool.release(conn, timeout=self.timeout)

    # ---- checkpoints -------------------------------------------------------------------------------------------

    async def get(self, scope: str, key: str) -> str | None:
        """The value of `key` in `scope`, or None."""
        async with self._connection() as conn:
            value = await conn.fetchval("SELECT value FROM checkpoints WHERE scope = $1 AND key = $2", scope, key)
        return None if value is None else str(value)

    async def get_all(self, scope: str) -> dict[str, str]:
        """Every key and value of `scope`."""
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT key, value FROM checkpoints WHERE scope = $1", scope)
        return {str(row["key"]): str(row["value"]) for row in rows}

    async def put_absent(self, scope: str, items: Mapping[str, str]) -> dict[str, str]:
        """The first writer wins: one INSERT ... ON CONFLICT DO NOTHING, then the scope as it is now."""
        async with self._connection() as conn:
            await conn.executemany(
                "INSERT INTO checkpoints (scope, key, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [(scope, k, v) for k, v in items.items()],
            )
        return await self.get_all(scope)

    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
        """Write or delete every item; returns once the transaction holding it has committed. Writes pending at the same
        time are group-committed in one transaction, which locks the lease rows of their fences first: a write whose
        fence no longer holds raises LeaseLost, and the others commit. Raises once closed."""
        if self._closed:
            raise RuntimeError("checkpoint store is closed")
        await self._ready()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Write(scope, dict(items), fence, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="postgres checkpoints")
        await done

    async def _write_pending(self) -> None:
        """Group commit: while one transaction runs, the next writes gather; each then goes in one transaction."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                refused = await self._commit(batch)
            except BaseException as exc:  # every writer of the batch gets the error
                for write in batch:
                    if not write.done.done():
                        write.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for write in batch:
                if write.done.done():
                    continue
                if write.fence is not None and write.fence in refused:
                    write.done.set_exception(LeaseLost(write.fence.lease))
                else:
                    write.done.set_result(None)

    async def _commit(self, batch: list[_Write]) -> set[Fence]:
        """Write every write of `batch` whose fence holds, in one transaction; return the fences that do not."""
        fences = {write.fence for write in batch if write.fence is not None}
        async with self._connection() as conn, conn.transaction():
            refused: set[Fence] = set()
            if fences:
                # Sorted, so that two hubs lock the same rows in the same order (no deadlock); the row lock holds
                # every takeover of these leases off until this transaction is over.
                rows = await conn.fetch(
                    "SELECT name, owner, token FROM leases WHERE name = ANY($1::text[])"
                    " AND expires > clock_timestamp() ORDER BY name FOR SHARE",
                    sorted({fence.lease for fence in fences}),
                )
                held = {(row["name"], row["owner"], row["token"]) for row in rows}
                refused = {fence for fence in fences if (fence.lease, fence.owner, fence.token) not in held}
            final: dict[tuple[str, str], str | None] = {}  # later writes of a key win, as if written one by one
            for write in batch:
                if write.fence is None or write.fence not in refused:
                    final.update(((write.scope, key), value) for key, value in write.items.items())
            upserts = sorted((scope, key, value) for (scope, key), value in final.items() if value is not None)
            deletes = sorted(key for key, value in final.items() if value is None)
            if upserts:
                await conn.execute(
                    "INSERT INTO checkpoints (scope, key, value)"
                    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
                    " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
                    *map(list, zip(*upserts, strict=True)),
                )
            if deletes:
                await conn.execute(
                    "DELETE FROM checkpoints c USING unnest($1::text[], $2::text[]) AS d(scope, key)"
                    " WHERE c.scope = d.scope AND c.key = d.key",
                    *map(list, zip(*deletes, strict=True)),
                )
        self.commits += 1
        return refused

    # ---- members and leases ------------------------------------------------------------------------------------

    async def heartbeat(
        self, member: str, groups: Sequence[str], ttl: float, info: Mapping[str, Any]
    ) -> list[MemberRow]:
        """Keep `member` alive until the database's now + ttl; every live member, sorted by id."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO members (member, groups, expires, info)"
                " VALUES ($1, $2::text[], clock_timestamp() + make_interval(secs => $3), $4::jsonb)"
                " ON CONFLICT (member) DO UPDATE SET groups = excluded.groups, expires = excluded.expires,"
                " info = excluded.info",
                member,
                list(groups),
                float(ttl),
                json.dumps(dict(info)),
            )
            rows = await conn.fetch(
                f"SELECT member, groups, {REMAINING} AS remaining, info::text AS info FROM members"
                " WHERE expires > clock_timestamp()"
            )
        members = [
            MemberRow(row["member"], tuple(row["groups"]), row["remaining"], json.loads(row["info"])) for row in rows
        ]
        return sorted(members, key=lambda row: row.member)

    async def leave(self, member: str) -> None:
        """Delete the member's row."""
        async with self._connection() as conn:
            await conn.execute("DELETE FROM members WHERE member = $1", member)

    async def register(self, leases: Mapping[str, str]) -> None:
        """Add a free lease row for every name not known yet (existing rows stay as they are)."""
        if not leases:
            return
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO leases (name, grp) SELECT * FROM unnest($1::text[], $2::text[])"
                " ON CONFLICT (name) DO NOTHING",
                list(leases),
                list(leases.values()),
            )

    async def leases(self) -> list[LeaseRow]:
        """Every lease row, sorted by name, with the seconds it has left on the database's clock."""
        async with self._connection() as conn:
            rows = await conn.fetch(f"SELECT name, grp, owner, token, {REMAINING} AS remaining FROM leases")
        leases = [LeaseRow(row["name"], row["grp"], row["owner"], row["token"], row["remaining"]) for row in rows]
        return sorted(leases, key=lambda row: row.name)

    async def acquire(self, name: str, member: str, ttl: float) -> int | None:
        """Take a free or expired lease for `member` in one UPDATE: its new token, or None."""
        async with self._connection() as conn:
            token = await conn.fetchval(
                "UPDATE leases SET owner = $2, token = token + 1,"
                " expires = clock_timestamp() + make_interval(secs => $3)"
                " WHERE name = $1 AND (owner IS NULL OR expires <= clock_timestamp()) RETURNING token",
                name,
                member,
                float(ttl),
            )
        return None if token is None else int(token)

    async def renew(self, member: str, held: Mapping[str, int], ttl: float) -> set[str]:
        """Extend the leases `member` still holds with those tokens, locking them in name order; the names renewed."""
        if not held:
            return set()
        async with self._connection() as conn:
            rows = await conn.fetch(
                # Locked in name order, as the fenced writes lock them: no deadlock between two hubs.
                "WITH mine AS (SELECT l.name FROM leases l JOIN unnest($1::text[], $2::bigint[]) AS h(name, token)"
                " ON l.name = h.name AND l.token = h.token"
                " WHERE l.owner = $3 AND l.expires > clock_timestamp() ORDER BY l.name FOR UPDATE OF l)"
                " UPDATE leases SET expires = clock_timestamp() + make_interval(secs => $4)"
                " FROM mine WHERE leases.name = mine.name RETURNING leases.name",
                list(held),
                list(held.values()),
                member,
                float(ttl),
            )
        return {str(row["name"]) for row in rows}

    async def release(self, fence: Fence) -> None:
        """Free the lease if the fence still holds."""
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE leases SET owner = NULL, expires = '-infinity' WHERE name = $1 AND owner = $2 AND token = $3",
                fence.lease,
                fence.owner,
                fence.token,
            )

    async def forget(self, fence: Fence) -> None:
        """Delete the lease row if the fence still holds."""
        async with self._connection() as conn:
            await conn.execute(
                "DELETE FROM leases WHERE name = $1 AND owner = $2 AND token = $3",
                fence.lease,
                fence.owner,
                fence.token,
            )

    async def close(self) -> None:
        """Finish the writes already asked for, then close the pool. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except TimeoutError:
                pool.terminate()
