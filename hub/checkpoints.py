"""Checkpoint stores: where positions and other small state live between runs.

A store is a set of string key/value pairs under a scope (a mapping's name, then a lane). A write returns
only once it is durable, so a source may settle (and so never deliver again) what it has written.

- `sqlite:///path`  the embedded default. One writer thread; concurrent writes are group-committed in one
                    transaction (WAL, synchronous=NORMAL: durable against a killed process).
- `redis://host:port/db` shared by several hub processes, and kept off the machine's disk: one hash per scope,
                    written with MULTI/EXEC (Redis's own durability settings apply: use appendonly for crash safety).
- `memory://`       for tests; forgets everything on exit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class CheckpointStore(ABC):
    @abstractmethod
    async def get(self, scope: str, key: str) -> str | None: ...

    @abstractmethod
    async def get_all(self, scope: str) -> dict[str, str]: ...

    @abstractmethod
    async def put_many(self, scope: str, items: Mapping[str, str | None]) -> None:
        """Write (or, for a None value, delete) every item, atomically, durably."""

    async def put(self, scope: str, key: str, value: str) -> None:
        await self.put_many(scope, {key: value})

    async def delete(self, scope: str, key: str) -> None:
        await self.put_many(scope, {key: None})

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class MemoryStore(CheckpointStore):
    def __init__(self) -> None:
        self._data: dict[str, dict[str, str]] = {}

    async def get(self, scope: str, key: str) -> str | None:
        return self._data.get(scope, {}).get(key)

    async def get_all(self, scope: str) -> dict[str, str]:
        return dict(self._data.get(scope, {}))

    async def put_many(self, scope: str, items: Mapping[str, str | None]) -> None:
        bucket = self._data.setdefault(scope, {})
        for key, value in items.items():
            if value is None:
                bucket.pop(key, None)
            else:
                bucket[key] = value


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

    async def put_many(self, scope: str, items: Mapping[str, str | None]) -> None:
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


class RedisStore(CheckpointStore):
    """Checkpoints in Redis: scope `s` is the hash `hub:checkpoints:s`. redis-py is imported only when used."""

    PREFIX = "hub:checkpoints:"

    def __init__(self, url: str) -> None:
        import redis.asyncio

        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=8, timeout=30, decode_responses=True, socket_timeout=10
        )
        self._client = redis.asyncio.Redis(connection_pool=pool)

    async def get(self, scope: str, key: str) -> str | None:
        value = await self._client.hget(self.PREFIX + scope, key)
        return None if value is None else str(value)

    async def get_all(self, scope: str) -> dict[str, str]:
        raw = await self._client.hgetall(self.PREFIX + scope)
        return {str(k): str(v) for k, v in raw.items()}

    async def put_many(self, scope: str, items: Mapping[str, str | None]) -> None:
        name = self.PREFIX + scope
        upserts: dict[Any, Any] = {k: v for k, v in items.items() if v is not None}
        deletes = [k for k, v in items.items() if v is None]
        async with self._client.pipeline(transaction=True) as pipe:
            if upserts:
                pipe.hset(name, mapping=upserts)
            if deletes:
                pipe.hdel(name, *deletes)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose()


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
    if url == "memory://":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://")):
        return RedisStore(url)
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    raise ValueError(f"unknown checkpoint store {url!r}")
