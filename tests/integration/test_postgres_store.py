"""What is PostgresStore's own, beyond the contract of tests/integration/test_stores.py: the row locks that order a
fenced write and a takeover, group commit, reads beside the writer, the schema, timeouts and secrets.

Against the machine's PostgreSQL, a schema per test. A test that must see a statement wait for a lock holds that
lock from a connection of its own (`blocker`) and watches pg_stat_activity for the wait from another (`watcher`),
by the store's application_name, never by the clock."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from hub.checkpoints import Fence, LeaseLost, open_store
from hub.config import HubConfig
from hub.postgres_store import PostgresStore, StoreUnavailable, split_url


async def eventually(condition: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


class Named:
    """A store whose connections carry an application_name of their own, and a connection of the test's own."""

    def __init__(self, url: str) -> None:
        self.app = f"hub-test-{uuid.uuid4().hex[:8]}"
        self.store = PostgresStore(f"{url}&application_name={self.app}")
        self.other = PostgresStore(f"{url}&application_name={self.app}-other")
        self.schema = split_url(url)[1]
        self.blocker: Any = None
        self.watcher: Any = None  # not the blocker: a transaction sees pg_stat_activity as it was at its start

    async def waiting(self, app: str, statement: str) -> bool:
        """True once a connection named `app` waits for a lock in a statement starting with `statement`."""
        count = await self.watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'"
            " AND query LIKE $2",
            app,
            statement + "%",
        )
        return bool(count)


@pytest.fixture
async def named(postgres_server: str, postgres_url: str) -> AsyncIterator[Named]:
    opened = Named(postgres_url)
    await opened.store.get("warm", "up")  # creates the schema and its tables
    opened.blocker = await asyncpg.connect(postgres_server, server_settings={"search_path": f'"{opened.schema}"'})
    opened.watcher = await asyncpg.connect(postgres_server)
    yield opened
    await opened.blocker.close()
    await opened.watcher.close()
    await opened.store.close()
    await opened.other.close()


async def test_a_takeover_waits_for_the_fenced_write_in_flight(named: Named) -> None:
    store, other, blocker = named.store, named.other, named.blocker
    await store.register({"orders/0": "orders"})
    token = await store.acquire("orders/0", "hub-a", 0.3)
    assert token == 1
    await store.put("orders", "0", "before")
    async with blocker.transaction():
        # The fenced write checks its lease (FOR SHARE), then waits here on the checkpoint's row.
        await blocker.execute("SELECT * FROM checkpoints WHERE scope = 'orders' AND key = '0' FOR UPDATE")
        write = asyncio.create_task(store.put("orders", "0", "in flight", Fence("orders/0", "hub-a", token)))
        await eventually(lambda: named.waiting(named.app, "INSERT INTO checkpoints"), "the write to wait")

        async def expired() -> bool:
            return all(row.remaining <= 0 for row in await other.leases())

        await eventually(expired, "the lease to expire")
        takeover = asyncio.create_task(other.acquire("orders/0", "hub-b", 60))
        await eventually(lambda: named.waiting(f"{named.app}-other", "UPDATE leases"), "the takeover to wait")
        assert not write.done() and not takeover.done()
    await write  # it had checked its lease in time: it lands, and the takeover comes after it
    assert await takeover == token + 1
    assert await other.get("orders", "0") == "in flight"
    with pytest.raises(LeaseLost):
        await store.put("orders", "0", "after", Fence("orders/0", "hub-a", token))


async def test_a_fenced_write_behind_a_takeover_is_refused(named: Named) -> None:
    store, blocker = named.store, named.blocker
    await store.register({"orders/0": "orders"})
    token = await store.acquire("orders/0", "hub-a", 60)
    assert token == 1
    async with blocker.transaction():  # a takeover in flight (the row is someone else's once it commits)
        await blocker.execute("UPDATE leases SET owner = 'hub-b', token = token + 1 WHERE name = 'orders/0'")
        write = asyncio.create_task(store.put("orders", "0", "late", Fence("orders/0", "hub-a", token)))
        await eventually(lambda: named.waiting(named.app, "SELECT name, owner, token FROM leases"), "the write to wait")
    with pytest.raises(LeaseLost):
        await write
    assert await store.get("orders", "0") is None


async def test_concurrent_writes_share_transactions_and_reads_do_not_wait_for_them(named: Named) -> None:
    store, blocker = named.store, named.blocker
    await store.register({f"lane-{i}": "orders" for i in range(4)})
    fences = [Fence(f"lane-{i}", "hub-a", await store.acquire(f"lane-{i}", "hub-a", 60) or 0) for i in range(4)]
    await store.put("orders", "read me", "1")
    before = store.commits
    async with blocker.transaction():
        await blocker.execute("INSERT INTO checkpoints VALUES ('orders', 'lane-0/0', 'blocker')")
        writes = [
            asyncio.create_task(store.put("orders", f"lane-{i % 4}/{i}", str(i), fences[i % 4])) for i in range(20)
        ]
        await eventually(lambda: named.waiting(named.app, "INSERT INTO checkpoints"), "the writer to wait")
        assert await store.get("orders", "read me") == "1"  # on another connection of the pool
        assert await store.get_all("orders") == {"read me": "1"}
    await asyncio.gather(*writes)
    assert store.commits - before < 20
    written = await named.other.get_all("orders")
    assert {key: value for key, value in written.items() if key != "read me"} == {
        f"lane-{i % 4}/{i}": str(i) for i in range(20)
    }


async def test_the_schema_and_tables_are_made_once_even_by_hubs_starting_together(
    postgres_server: str, postgres_url: str
) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.put("s", f"k{i}", "v") for i, store in enumerate(stores)))
        assert await stores[0].get_all("s") == {f"k{i}": "v" for i in range(4)}
        schema = split_url(postgres_url)[1]
        conn = await asyncpg.connect(postgres_server)
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
        finally:
            await conn.close()
        assert sorted(row["table_name"] for row in tables) == ["checkpoints", "leases", "members"]
    finally:
        for store in stores:
            await store.close()


async def test_an_unreachable_store_raises_without_its_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it once closed
    store = PostgresStore(f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/postgres?schema=nowhere")
    with pytest.raises(StoreUnavailable) as refused:
        await store.get("orders", "0")
    assert "s3cret-pw" not in str(refused.value) and "postgres:***@127.0.0.1" in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    await store.close()
    await store.close()


async def test_a_store_that_never_answers_raises_within_its_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = PostgresStore(f"postgresql://postgres:pw@127.0.0.1:{port}/postgres", timeout=0.5)
        with pytest.raises(StoreUnavailable) as timed_out:
            await asyncio.wait_for(store.put("orders", "0", "1"), 30)
        assert "TimeoutError" in str(timed_out.value) and "pw@" not in str(timed_out.value)
        await store.close()


async def test_urls_and_configuration(postgres_url: str) -> None:
    assert split_url("postgresql://u:p@h:5432/db?sslmode=disable&schema=hub_a") == (
        "postgresql://u:p@h:5432/db?sslmode=disable",
        "hub_a",
    )
    assert split_url("postgres://h/db") == ("postgres://h/db", None)
    with pytest.raises(ValueError, match="schema"):
        split_url("postgresql://h/db?schema=a;drop")
    store = open_store(postgres_url.replace("postgresql://", "postgres://"))
    try:
        assert isinstance(store, PostgresStore) and store.shared
        await store.put("s", "k", "v")
    finally:
        await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.put("s", "k", "v")
    assert HubConfig.model_validate({"checkpoints": postgres_url}).checkpoints == postgres_url
    with pytest.raises(ValueError, match="schema"):
        HubConfig.model_validate({"checkpoints": "postgresql://h/db?schema=no-dashes"})
