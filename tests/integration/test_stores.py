"""The checkpoint store contract (hub/checkpoints.py), run against every store: MemoryStore(shared=True) (the
reference), Redis (a redis-server of the session, a key prefix per test) and PostgreSQL (the machine's, a schema
per test). SqliteStore and an unshared MemoryStore, which keep no leases, pass the checkpoint cases.

Two clients of one store play two hubs (`other`): for Redis and PostgreSQL, a second connection pool."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from hub.checkpoints import CheckpointStore, Fence, LeaseLost, LeaseRow, LeaseStore, MemoryStore, SqliteStore

SHARED = ["memory", "redis", "postgresql"]
SHORT = 0.3
"""A lease or member ttl that the test waits out (by watching the store, never by sleeping)."""
LONG = 60.0
T = TypeVar("T")


async def eventually(condition: Callable[[], Awaitable[T]], what: str, timeout: float = 10.0) -> T:
    """Await `condition()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class Stores:
    """Opens clients of one store (one kind) and closes them, and the store's data, after the test."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind = kind
        self.opened: list[CheckpointStore] = []
        self.memory = MemoryStore(shared=True)
        self.prefix = f"hub-test-{uuid.uuid4().hex[:10]}:"
        if kind == "redis":
            self.url = request.getfixturevalue("redis_url")
        elif kind == "postgresql":
            self.url = request.getfixturevalue("postgres_url")
        elif kind == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'state.db'}"

    def open(self) -> CheckpointStore:
        store: CheckpointStore
        if self.kind == "memory":
            store = self.memory
        elif self.kind == "memory-unshared":
            store = MemoryStore()
        elif self.kind == "sqlite":
            store = SqliteStore(self.url.removeprefix("sqlite:///"))
        elif self.kind == "redis":
            from hub.redis_store import RedisStore

            store = RedisStore(self.url, prefix=self.prefix)
        else:
            from hub.postgres_store import PostgresStore

            store = PostgresStore(self.url)
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            await store.close()
        if self.kind == "redis":
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(self.url)
            keys = [key async for key in client.scan_iter(match=self.prefix + "*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


@pytest.fixture(params=SHARED)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    opened = Stores(request.param, request, tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
def store(stores: Stores) -> LeaseStore:
    opened = stores.open()
    assert isinstance(opened, LeaseStore) and opened.shared
    return opened


@pytest.fixture
def other(stores: Stores) -> LeaseStore:
    """A second client of the same store: another hub."""
    opened = stores.open()
    assert isinstance(opened, LeaseStore)
    return opened


@pytest.fixture(params=[*SHARED, "sqlite", "memory-unshared"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CheckpointStore]:
    opened = Stores(request.param, request, tmp_path)
    yield opened.open()
    await opened.close()


async def lease(store: LeaseStore, name: str) -> LeaseRow:
    return next(row for row in await store.leases() if row.name == name)


async def expired(store: LeaseStore, name: str) -> bool:
    row = next((row for row in await store.leases() if row.name == name), None)
    return row is not None and row.remaining <= 0


# ---- checkpoints -----------------------------------------------------------------------------------------------


async def test_checkpoints_round_trip(any_store: CheckpointStore) -> None:
    assert await any_store.get("orders", "lane-0") is None
    assert await any_store.get_all("orders") == {}
    await any_store.put_many("orders", {"lane-0": "41", "lane-1": "7", "lane-2": "é ✓ " + "x" * 5000})
    await any_store.put("invoices", "lane-0", "3")
    assert await any_store.get("orders", "lane-0") == "41"
    await any_store.put_many("orders", {"lane-0": "42", "lane-1": None})
    await any_store.delete("orders", "lane-2")
    await any_store.delete("orders", "never-written")
    assert await any_store.get_all("orders") == {"lane-0": "42"}
    assert await any_store.get_all("invoices") == {"lane-0": "3"}
    assert await any_store.get("orders", "lane-1") is None


async def test_put_absent_lets_the_first_writer_win(any_store: CheckpointStore) -> None:
    await any_store.put("stream", "shard-0", "12")
    now = await any_store.put_absent("stream", {"shard-0": "LATEST@1", "shard-1": "LATEST@1"})
    assert now == {"shard-0": "12", "shard-1": "LATEST@1"}
    again = await any_store.put_absent("stream", {"shard-1": "LATEST@2", "shard-2": "SHARD_END"})
    assert again == {"shard-0": "12", "shard-1": "LATEST@1", "shard-2": "SHARD_END"}
    assert await any_store.get_all("stream") == again


@pytest.mark.parametrize("kind", ["sqlite", "memory-unshared"])
async def test_a_store_of_one_process_ignores_the_fence(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    opened = Stores(kind, request, tmp_path)
    store = opened.open()
    try:
        assert not store.shared
        await store.put("orders", "lane-0", "1", Fence("no such lease", "nobody", 99))
        assert await store.get("orders", "lane-0") == "1"
    finally:
        await opened.close()


# ---- fenced writes ---------------------------------------------------------------------------------------------


async def test_fenced_write_lands_while_the_lease_is_held(store: LeaseStore) -> None:
    await store.register({"orders/0": "orders"})
    token = await store.acquire("orders/0", "hub-a", LONG)
    assert token == 1
    await store.put_many("orders", {"0": "10", "1": "11"}, Fence("orders/0", "hub-a", token))
    await store.delete("orders", "1", Fence("orders/0", "hub-a", token))
    assert await store.get_all("orders") == {"0": "10"}


async def test_fenced_write_refused_once_another_member_took_the_lease(store: LeaseStore, other: LeaseStore) -> None:
    await store.register({"orders/0": "orders"})
    mine = await store.acquire("orders/0", "hub-a", SHORT)
    assert mine is not None
    await store.put("orders", "0", "10", Fence("orders/0", "hub-a", mine))
    await eventually(lambda: expired(other, "orders/0"), "the lease to expire")
    theirs = await other.acquire("orders/0", "hub-b", LONG)
    assert theirs == mine + 1
    with pytest.raises(LeaseLost):
        await store.put_many("orders", {"0": "11", "1": "1"}, Fence("orders/0", "hub-a", mine))
    assert await other.get_all("orders") == {"0": "10"}  # nothing of the refused write, not even the new key
    await other.put("orders", "0", "20", Fence("orders/0", "hub-b", theirs))
    assert await store.get("orders", "0") == "20"


async def test_fenced_write_refused_after_release(store: LeaseStore) -> None:
    await store.register({"orders/0": "orders"})
    token = await store.acquire("orders/0", "hub-a", LONG)
    assert token is not None
    await store.release(Fence("orders/0", "hub-a", token))
    row = await lease(store, "orders/0")
    assert row.owner is None and not row.held and row.token == token
    with pytest.raises(LeaseLost):
        await store.put("orders", "0", "1", Fence("orders/0", "hub-a", token))
    assert await store.get_all("orders") == {}


async def test_fenced_write_refused_after_expiry_even_if_nobody_took_it(store: LeaseStore) -> None:
    await store.register({"orders/0": "orders"})
    token = await store.acquire("orders/0", "hub-a", SHORT)
    assert token is not None
    await eventually(lambda: expired(store, "orders/0"), "the lease to expire")
    with pytest.raises(LeaseLost):
        await store.put("orders", "0", "1", Fence("orders/0", "hub-a", token))
    assert await store.get("orders", "0") is None
    with pytest.raises(LeaseLost):  # a lease that does not exist fences nothing
        await store.put("orders", "0", "1", Fence("no such lease", "hub-a", 1))
    assert await store.get("orders", "0") is None


# ---- leases ----------------------------------------------------------------------------------------------------


async def test_acquire_refuses_a_held_lease_and_takes_an_expired_one(store: LeaseStore, other: LeaseStore) -> None:
    await store.register({"a": "g", "b": "g"})
    assert await store.acquire("missing", "hub-a", LONG) is None
    assert await store.acquire("a", "hub-a", LONG) == 1
    assert await other.acquire("a", "hub-b", LONG) is None
    assert await store.acquire("a", "hub-a", LONG) is None  # held, even by the asker: a renewal is renew()
    assert await store.acquire("b", "hub-a", SHORT) == 1
    await eventually(lambda: expired(other, "b"), "lease b to expire")
    assert await other.acquire("b", "hub-b", LONG) == 2
    rows = {row.name: row for row in await other.leases()}
    assert [rows["a"].owner, rows["a"].token, rows["a"].held] == ["hub-a", 1, True]
    assert [rows["b"].owner, rows["b"].token, rows["b"].held] == ["hub-b", 2, True]
    assert rows["b"].group == "g" and 0 < rows["b"].remaining <= LONG
    await other.release(Fence("b", "hub-b", 2))
    assert await store.acquire("b", "hub-a", LONG) == 3  # a released lease is free at once


async def test_renew_keeps_only_the_leases_still_held(store: LeaseStore, other: LeaseStore) -> None:
    await store.register({"a": "g", "b": "g", "c": "g", "d": "g"})
    a = await store.acquire("a", "hub-a", LONG)
    b = await store.acquire("b", "hub-a", SHORT)
    c = await other.acquire("c", "hub-b", LONG)
    assert a == b == c == 1
    await eventually(lambda: expired(store, "b"), "lease b to expire")
    kept = await store.renew("hub-a", {"a": 1, "b": 1, "c": 1, "d": 0, "missing": 1}, 2 * LONG)
    assert kept == {"a"}
    rows = {row.name: row for row in await store.leases()}
    assert rows["a"].remaining > LONG  # extended to 2 * LONG from now
    assert rows["b"].owner == "hub-a" and rows["b"].remaining <= 0  # lost: not brought back to life
    assert rows["c"].owner == "hub-b"
    assert await store.renew("hub-a", {"a": 2}, LONG) == set()  # a token that is not the lease's
    assert await store.renew("hub-a", {}, LONG) == set()


async def test_register_is_idempotent_and_keeps_owners(store: LeaseStore, other: LeaseStore) -> None:
    await store.register({"a": "g1"})
    assert await store.acquire("a", "hub-a", LONG) == 1
    await other.register({"a": "g2", "b": "g1"})
    await other.register({})
    rows = await store.leases()
    assert [row.name for row in rows] == ["a", "b"]
    a, b = rows
    assert (a.group, a.owner, a.token, a.held) == ("g1", "hub-a", 1, True)
    assert (b.group, b.owner, b.token, b.held) == ("g1", None, 0, False)


async def test_forget_deletes_only_with_the_right_fence(store: LeaseStore) -> None:
    await store.register({"shard-1": "stream", "shard-2": "stream"})
    token = await store.acquire("shard-1", "hub-a", LONG)
    assert token == 1
    await store.forget(Fence("shard-1", "hub-a", 2))
    await store.forget(Fence("shard-1", "hub-b", 1))
    await store.release(Fence("shard-1", "hub-b", 1))  # not its owner: nothing happens
    assert [(row.name, row.owner) for row in await store.leases()] == [("shard-1", "hub-a"), ("shard-2", None)]
    await store.forget(Fence("shard-1", "hub-a", 1))
    assert [row.name for row in await store.leases()] == ["shard-2"]
    assert await store.acquire("shard-1", "hub-a", LONG) is None
    with pytest.raises(LeaseLost):
        await store.put("stream", "shard-1", "x", Fence("shard-1", "hub-a", 1))


# ---- members ---------------------------------------------------------------------------------------------------


async def test_heartbeat_lists_live_members_and_forgets_the_others(store: LeaseStore, other: LeaseStore) -> None:
    await other.heartbeat("hub-b", ["orders"], LONG, {"host": "b", "pid": 2})
    rows = await store.heartbeat("hub-a", ["orders", "invoices"], LONG, {"host": "a", "pid": 1})
    assert [(r.member, r.groups, r.info) for r in rows] == [
        ("hub-a", ("orders", "invoices"), {"host": "a", "pid": 1}),
        ("hub-b", ("orders",), {"host": "b", "pid": 2}),
    ]
    assert all(0 < r.remaining <= LONG for r in rows)
    await other.heartbeat("hub-0", [], SHORT, {})
    assert [r.member for r in await store.heartbeat("hub-a", ["orders"], LONG, {})] == ["hub-0", "hub-a", "hub-b"]

    async def gone() -> bool:
        return [r.member for r in await store.heartbeat("hub-a", ["orders"], LONG, {})] == ["hub-a", "hub-b"]

    await eventually(gone, "hub-0 to expire")
    await other.leave("hub-b")
    rows = await store.heartbeat("hub-a", ["orders"], LONG, {})
    assert [(r.member, r.groups, r.info) for r in rows] == [("hub-a", ("orders",), {})]


# ---- concurrency -----------------------------------------------------------------------------------------------


async def test_concurrent_fenced_writes_from_many_lanes_all_land(store: LeaseStore, other: LeaseStore) -> None:
    """20 writes at once (the group commit path): every one with a good fence lands, the stale ones alone fail."""
    names = {f"orders/{lane}": "orders" for lane in range(4)}
    await store.register(names)
    fences = [Fence(name, "hub-a", await store.acquire(name, "hub-a", LONG) or 0) for name in names]
    stale = Fence("orders/0", "hub-a", fences[0].token + 1)
    writes = [(f"{i % 4}/{i}", fences[i % 4]) for i in range(20)]
    writes += [(f"stale/{i}", stale) for i in range(3)]
    results = await asyncio.gather(
        *(store.put_many("orders", {key: str(i), f"{key}/pair": "p"}, f) for i, (key, f) in enumerate(writes)),
        return_exceptions=True,
    )
    assert results[:20] == [None] * 20
    assert all(isinstance(r, LeaseLost) for r in results[20:])
    written = await other.get_all("orders")
    assert len(written) == 40
    assert all(written[key] == str(i) and written[f"{key}/pair"] == "p" for i, (key, _) in enumerate(writes[:20]))


async def test_no_write_lands_after_the_lease_changed_hands(store: LeaseStore, other: LeaseStore) -> None:
    """Writers hammer a lease about to expire while another hub takes it over as soon as it may: whatever the takeover
    found written stays, and no write started after the takeover lands. Five rounds, on five leases."""
    for round_ in range(5):
        found, late = await race(store, other, f"race/{round_}")
        assert late == []
        assert await other.get("race", f"race/{round_}") == found


async def race(store: LeaseStore, other: LeaseStore, name: str) -> tuple[str | None, list[str]]:
    """One round: (what the takeover found written, the writes started after it that landed)."""
    await store.register({name: "race"})
    token = await store.acquire(name, "hub-a", 0.1)
    assert token is not None
    fence = Fence(name, "hub-a", token)
    taken = asyncio.Event()
    late: list[str] = []

    async def write(lane: int) -> None:
        for seq in range(100_000):
            after_takeover = taken.is_set()
            value = f"{lane}-{seq}"
            try:
                await store.put("race", name, value, fence)
            except LeaseLost:
                if after_takeover:
                    return
            else:
                if after_takeover:
                    late.append(value)
            await asyncio.sleep(0)  # the memory store never yields by itself

    async def take_over() -> str | None:
        while (new := await other.acquire(name, "hub-b", LONG)) is None:
            await asyncio.sleep(0)
        assert new == token + 1
        taken.set()
        return await other.get("race", name)

    writers = [asyncio.create_task(write(lane)) for lane in range(4)]
    found = await asyncio.wait_for(take_over(), 20)
    await asyncio.wait_for(asyncio.gather(*writers), 20)
    return found, late


# ---- one store's own -------------------------------------------------------------------------------------------


async def test_redis_keeps_the_checkpoint_layout_of_earlier_versions(redis_url: str) -> None:
    import redis.asyncio

    from hub.checkpoints import open_store

    scope = f"hub-test-{uuid.uuid4().hex[:10]}"
    store = open_store(redis_url)
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.hset(f"hub:checkpoints:{scope}", mapping={"lane-0": "written by an earlier version"})
        assert await store.get(scope, "lane-0") == "written by an earlier version"
        await store.put(scope, "lane-1", "5")
        assert await client.hgetall(f"hub:checkpoints:{scope}") == {
            "lane-0": "written by an earlier version",
            "lane-1": "5",
        }
    finally:
        await client.delete(f"hub:checkpoints:{scope}")
        await client.aclose()
        await store.close()
        await store.close()
