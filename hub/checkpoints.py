"""Checkpoint stores: where positions and other small state live between runs.

A store is a set of string key/value pairs under a scope (a mapping's name, then a lane). A write returns
only once it is durable, so a source may settle (and so never deliver again) what it has written.

- `sqlite:///path`  the embedded default. One writer thread; concurrent writes are group-committed in one
                    transaction (WAL, synchronous=NORMAL: durable against a killed process).
- `postgresql://user@host:port/db[?schema=NAME]` (or `postgres://`) the store for several hubs
                    (hub/postgres_store.py): tables created on first use, fenced writes group-committed in one
                    transaction that holds their lease rows.
- `redis://host:port/db` also shared by several hub processes, and kept off the machine's disk
                    (hub/redis_store.py): one hash per scope, written with MULTI/EXEC, or by a Lua script that checks
                    the fence (Redis's own durability settings apply: use appendonly for crash safety).
- `memory://`       for tests; forgets everything on exit.

Shared stores (`shared = True`: PostgreSQL, Redis) also keep **leases** and **members** for hubs that share work
the brokers do not coordinate (hub/leases.py). Every lease time is reckoned in the store's own clock, never a
hub's: a lease row holds its owner, a fencing token that grows by one at each new owner, and its expiry. A write
that carries a `Fence` is refused (LeaseLost) unless the lease still has that owner and token and has not expired:
an owner paused past its lease can move no checkpoint once it wakes.

The contract every store implements is in hub/store.py; this module has the stores of one process and `open_store`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hub.store import CheckpointStore, Fence, LeaseLost, LeaseRow, LeaseStore, MemberRow, redacted

__all__ = [
    "CheckpointStore",
    "Fence",
    "LeaseLost",
    "LeaseRow",
    "LeaseStore",
    "MemberRow",
    "MemoryStore",
    "SqliteStore",
    "open_store",
    "redacted",
]


class MemoryStore(LeaseStore):
    """In this process only. `MemoryStore(shared=True)` keeps leases too, on `clock` (default: time.monotonic),
    so that tests can run several hubs in one process against one store."""

    def __init__(self, *, shared: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.shared = shared
        self.now = clock
        self._data: dict[str, dict[str, str]] = {}
        self._leases: dict[str, dict[str, Any]] = {}
        self._members: dict[str, tuple[tuple[str, ...], float, dict[str, Any]]] = {}

    async def get(self, scope: str, key: str) -> str | None:
        """The value of `key` in `scope`, or None."""
        return self._data.get(scope, {}).get(key)

    async def get_all(self, scope: str) -> dict[str, str]:
        """Every key and value of `scope` (a copy)."""
        return dict(self._data.get(scope, {}))

    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
        """Write or delete every item at once; a shared store refuses a fence that no longer holds (LeaseLost)."""
        if fence is not None and self.shared and not self._holds(fence):
            raise LeaseLost(fence.lease)
        bucket = self._data.setdefault(scope, {})
        for key, value in items.items():
            if value is None:
                bucket.pop(key, None)
            else:
                bucket[key] = value

    def _holds(self, fence: Fence) -> bool:
        row = self._leases.get(fence.lease)
        return (
            row is not None
            and row["owner"] == fence.owner
            and row["token"] == fence.token
            and row["expires"] > self.now()
        )

    async def heartbeat(
        self, member: str, groups: Sequence[str], ttl: float, info: Mapping[str, Any]
    ) -> list[MemberRow]:
        """Keep `member` alive until now + ttl on this store's clock; every live member, sorted by id."""
        now = self.now()
        self._members[member] = (tuple(groups), now + ttl, dict(info))
        return [
            MemberRow(m, g, expires - now, dict(i))
            for m, (g, expires, i) in sorted(self._members.items())
            if expires > now
        ]

    async def leave(self, member: str) -> None:
        """Forget `member` at once."""
        self._members.pop(member, None)

    async def register(self, leases: Mapping[str, str]) -> None:
        """Add a free lease row for every name not known yet."""
        for name, group in leases.items():
            self._leases.setdefault(name, {"group": group, "owner": None, "token": 0, "expires": float("-inf")})

    async def leases(self) -> list[LeaseRow]:
        """Every lease row, sorted by name, with the seconds it has left on this store's clock."""
        now = self.now()
        return [
            LeaseRow(name, row["group"], row["owner"], row["token"], max(-1e9, row["expires"] - now))
            for name, row in sorted(self._leases.items())
        ]

    async def acquire(self, name: str, member: str, ttl: float) -> int | None:
        """Take a free or expired lease for `member`: its new token, or None when another member holds it."""
        row = self._leases.get(name)
        now = self.now()
        if row is None or (row["owner"] is not None and row["expires"] > now):
            return None
        row.update(owner=member, token=row["token"] + 1, expires=now + ttl)
        return int(row["token"])

    async def renew(self, member: str, held: Mapping[str, int], ttl: float) -> set[str]:
        """Extend the leases `member` still holds with those tokens; the names renewed."""
        now = self.now()
        kept = set()
        for name, token in held.items():
            row = self._leases.get(name)
            if row is not None and row["owner"] == member and row["token"] == token and row["expires"] > now:
                row["expires"] = now + ttl
                kept.add(name)
        return kept

    async def release(self, fence: Fence) -> None:
        """Free the lease if the fence still holds."""
        row = self._leases.get(fence.lease)
        if row is not None and row["owner"] == fence.owner and row["token"] == fence.token:
            row.update(owner=None, expires=float("-inf"))

    async def forget(self, fence: Fence) -> None:
        """Delete the lease row if the fence still holds."""
        row = self._leases.get(fence.lease)
        if row is not None and row["owner"] == fence.owner and row["token"] == fence.token:
            del self._leases[fence.lease]


class SqliteStore(CheckpointStore):
    """The embedded store of one hub: a SQLite file in WAL mode, read in a worker thread and written by one writer
    thread that group-commits every write pending at once in one transaction. It keeps no leases (a store of one
    process)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: list[tuple[str, Mapping[str, str | None], asyncio.Future[None]]] = []
        self._flushing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="checkpoints")
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS checkpoints (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
            " PRIMARY KEY (scope, key)) WITHOUT ROWID"
        )
        self._closed = False

    def _query(self, sql: str, args: tuple[str, ...]) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._db.execute(sql, args))

    async def get(self, scope: str, key: str) -> str | None:
        """The value of `key` in `scope`, or None (read in a worker thread)."""
        rows = await asyncio.to_thread(
            self._query, "SELECT key, value FROM checkpoints WHERE scope = ? AND key = ?", (scope, key)
        )
        return rows[0][1] if rows else None

    async def get_all(self, scope: str) -> dict[str, str]:
        """Every key and value of `scope`."""
        rows = await asyncio.to_thread(self._query, "SELECT key, value FROM checkpoints WHERE scope = ?", (scope,))
        return dict(rows)

    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
        """Write or delete every item, atomically; returns once the transaction that holds it is committed (writes
        pending at the same time share it). The fence is ignored: nothing else writes this file. Raises once closed."""
        if self._closed:
            raise RuntimeError("checkpoint store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((scope, dict(items), future))
        if not self._flushing:
            self._flushing = True
            self._idle.clear()
            loop.run_in_executor(self._writer, self._flush, loop)
        await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Group commit: write every pending item in one transaction, then wake their writers."""
        while True:
            batch = self._take(loop)
            if not batch:
                return
            error: BaseException | None = None
            try:
                with self._lock:
                    self._db.execute("BEGIN")
                    try:
                        for scope, items, _ in batch:
                            upserts = [(scope, k, v) for k, v in items.items() if v is not None]
                            deletes = [(scope, k) for k, v in items.items() if v is None]
                            if upserts:
                                self._db.executemany(
                                    "INSERT INTO checkpoints (scope, key, value) VALUES (?, ?, ?) "
                                    "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
                                    upserts,
                                )
                            if deletes:
                                self._db.executemany("DELETE FROM checkpoints WHERE scope = ? AND key = ?", deletes)
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
            except BaseException as exc:  # handed to every waiting writer
                error = exc
            loop.call_soon_threadsafe(_resolve, [f for _, _, f in batch], error)

    def _take(
        self, loop: asyncio.AbstractEventLoop
    ) -> list[tuple[str, Mapping[str, str | None], asyncio.Future[None]]]:
        # Runs in the writer thread; _pending is appended to on the loop thread, so swap it there.
        done = threading.Event()
        taken: list[tuple[str, Mapping[str, str | None], asyncio.Future[None]]] = []

        def swap() -> None:
            nonlocal taken
            taken, self._pending = self._pending, []
            if not taken:
                self._flushing = False
                self._idle.set()
            done.set()

        try:
            loop.call_soon_threadsafe(swap)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            return []
        done.wait()
        return taken

    async def close(self) -> None:
        """Let the writes in progress commit, then close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._idle.wait()
        self._writer.shutdown(wait=True)
        with self._lock:
            self._db.close()


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def open_store(url: str) -> CheckpointStore:
    """The store a `checkpoints:` URL names. Redis and PostgreSQL are imported only when named (their clients are
    extras); neither connects before its first use."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://")):
        from hub.redis_store import RedisStore

        return RedisStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from hub.postgres_store import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    raise ValueError(f"unknown checkpoint store {url!r}")
