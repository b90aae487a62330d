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
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class LeaseLost(Exception):
    """A fenced write was refused: the lease has another owner, a newer token, or has expired."""


@dataclass(frozen=True, slots=True)
class Fence:
    """What a write carries to prove its writer still holds a lease: the lease, its owner and its token."""

    lease: str
    owner: str
    token: int


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A lease as the store sees it now. `owner` is None for a lease nobody holds (never taken, or released);
    `remaining` is the seconds left before it expires, in the store's clock (<= 0: expired, free to take)."""

    name: str
    group: str
    owner: str | None
    token: int
    remaining: float

    @property
    def held(self) -> bool:
        return self.owner is not None and self.remaining > 0


@dataclass(frozen=True, slots=True)
class MemberRow:
    """A live hub process: its id, the groups (mapping names) whose leases it may hold, and what `/status` shows
    of it (`info`: host, pid; never a setting)."""

    member: str
    groups: tuple[str, ...]
    remaining: float
    info: dict[str, Any] = field(default_factory=dict)


class CheckpointStore(ABC):
    shared = False
    """True for a store several hub processes coordinate through (leases and members below); False for a store
    of one process, whose leases hub/leases.py grants at once without asking it."""

    @abstractmethod
    async def get(self, scope: str, key: str) -> str | None: ...

    @abstractmethod
    async def get_all(self, scope: str) -> dict[str, str]: ...

    @abstractmethod
    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
        """Write (or, for a None value, delete) every item, atomically, durably.

        With a `fence`, only while that lease has that owner and token and has not expired in the store's clock;
        otherwise nothing is written and LeaseLost is raised. A store that is not `shared` ignores the fence."""

    async def put(self, scope: str, key: str, value: str, fence: Fence | None = None) -> None:
        await self.put_many(scope, {key: value}, fence)

    async def delete(self, scope: str, key: str, fence: Fence | None = None) -> None:
        await self.put_many(scope, {key: None}, fence)

    async def put_absent(self, scope: str, items: Mapping[str, str]) -> dict[str, str]:
        """Write each item whose key has no value yet (the first writer wins), and return the scope as it is now.
        Shared stores do it atomically, so that two hubs starting at once agree."""
        present = await self.get_all(scope)
        missing = {k: v for k, v in items.items() if k not in present}
        if missing:
            await self.put_many(scope, missing)
        return {**present, **missing}

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class LeaseStore(CheckpointStore):
    """A store that also keeps leases and members, for several hub processes (hub/leases.py drives it)."""

    shared = True

    @abstractmethod
    async def heartbeat(
        self, member: str, groups: Sequence[str], ttl: float, info: Mapping[str, Any]
    ) -> list[MemberRow]:
        """Say `member` is alive for `ttl` more seconds (store clock), serving `groups`; return every live member,
        this one included, sorted by id."""

    @abstractmethod
    async def leave(self, member: str) -> None:
        """Forget the member at once (a graceful stop), so that the others rebalance without waiting for it."""

    @abstractmethod
    async def register(self, leases: Mapping[str, str]) -> None:
        """Make sure a lease row exists for every name (name -> group); existing rows are left as they are."""

    @abstractmethod
    async def leases(self) -> list[LeaseRow]:
        """Every lease, sorted by name."""

    @abstractmethod
    async def acquire(self, name: str, member: str, ttl: float) -> int | None:
        """Take the lease if nobody holds it (free, or expired in the store's clock): owner = member, token + 1,
        expiry = now + ttl. Returns the new token, or None if another member holds it or it does not exist."""

    @abstractmethod
    async def renew(self, member: str, held: Mapping[str, int], ttl: float) -> set[str]:
        """Extend every lease of `held` (name -> token) that still has this owner and token and has not expired to
        now + ttl. Returns the names renewed; the others are lost (an expired lease is lost even if nobody took it
        since: its owner may already have been told to stop)."""

    @abstractmethod
    async def release(self, fence: Fence) -> None:
        """Give the lease back (owner None, expired), if the fence still holds; else do nothing."""

    @abstractmethod
    async def forget(self, fence: Fence) -> None:
        """Delete the lease row (its work is over: a finished shard), if the fence still holds; else do nothing."""


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
        return self._data.get(scope, {}).get(key)

    async def get_all(self, scope: str) -> dict[str, str]:
        return dict(self._data.get(scope, {}))

    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
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
        now = self.now()
        self._members[member] = (tuple(groups), now + ttl, dict(info))
        return [
            MemberRow(m, g, expires - now, dict(i))
            for m, (g, expires, i) in sorted(self._members.items())
            if expires > now
        ]

    async def leave(self, member: str) -> None:
        self._members.pop(member, None)

    async def register(self, leases: Mapping[str, str]) -> None:
        for name, group in leases.items():
            self._leases.setdefault(name, {"group": group, "owner": None, "token": 0, "expires": float("-inf")})

    async def leases(self) -> list[LeaseRow]:
        now = self.now()
        return [
            LeaseRow(name, row["group"], row["owner"], row["token"], max(-1e9, row["expires"] - now))
            for name, row in sorted(self._leases.items())
        ]

    async def acquire(self, name: str, member: str, ttl: float) -> int | None:
        row = self._leases.get(name)
        now = self.now()
        if row is None or (row["owner"] is not None and row["expires"] > now):
            return None
        row.update(owner=member, token=row["token"] + 1, expires=now + ttl)
        return int(row["token"])

    async def renew(self, member: str, held: Mapping[str, int], ttl: float) -> set[str]:
        now = self.now()
        kept = set()
        for name, token in held.items():
            row = self._leases.get(name)
            if row is not None and row["owner"] == member and row["token"] == token and row["expires"] > now:
                row["expires"] = now + ttl
                kept.add(name)
        return kept

    async def release(self, fence: Fence) -> None:
        row = self._leases.get(fence.lease)
        if row is not None and row["owner"] == fence.owner and row["token"] == fence.token:
            row.update(owner=None, expires=float("-inf"))

    async def forget(self, fence: Fence) -> None:
        row = self._leases.get(fence.lease)
        if row is not None and row["owner"] == fence.owner and row["token"] == fence.token:
            del self._leases[fence.lease]


class SqliteStore(CheckpointStore):
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
        rows = await asyncio.to_thread(
            self._query, "SELECT key, value FROM checkpoints WHERE scope = ? AND key = ?", (scope, key)
        )
        return rows[0][1] if rows else None

    async def get_all(self, scope: str) -> dict[str, str]:
        rows = await asyncio.to_thread(self._query, "SELECT key, value FROM checkpoints WHERE scope = ?", (scope,))
        return dict(rows)

    async def put_many(self, scope: str, items: Mapping[str, str | None], fence: Fence | None = None) -> None:
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


def redacted(url: str) -> str:
    """The store's URL fit for a log line: any password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


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
