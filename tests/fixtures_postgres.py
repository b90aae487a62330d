"""The machine's PostgreSQL (postgresql://postgres@127.0.0.1:5432/postgres, trust auth; HUB_TEST_POSTGRES_URL to
use another), one fresh schema per test.

Loaded for every test by tests/conftest.py; ask for:

- `postgres_url`: the URL of a schema of this test's own (`...?schema=hub_test_<hex>`), which PostgresStore creates
  on first use; dropped after the test;
- `postgres_schemas`: a function that makes one more such URL at each call (several stores apart in one test);
  every schema it named is dropped after the test.

If PostgreSQL does not answer, the tests fail (never skip), saying so.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

POSTGRES_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end on an event loop of its own, in a thread of its own: the fixtures are asked for from
    sync and async code alike, and must neither need nor disturb the test's loop."""
    with ThreadPoolExecutor(1, thread_name_prefix="postgres-fixture") as thread:
        return thread.submit(asyncio.run, coro).result()


async def _execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await conn.execute(sql, timeout=30)
    finally:
        await conn.close(timeout=10)


def schema_url(schema: str, base: str = POSTGRES_URL) -> str:
    """`base` with `?schema=schema` (or `&schema=` when it has a query already)."""
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


def drop_schema(schema: str) -> None:
    run_sync(_execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of the machine's PostgreSQL, once it answered; a clear failure if it does not."""
    try:
        run_sync(_execute("SELECT 1"))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL does not answer at {POSTGRES_URL} ({type(exc).__name__}: {exc}); start it (Debian: "
            "pg_ctlcluster <version> main start) or point HUB_TEST_POSTGRES_URL at one",
            pytrace=False,
        )
    return POSTGRES_URL


@pytest.fixture
def postgres_schemas(postgres_server: str) -> Iterator[Callable[[], str]]:
    """A function returning the URL of a fresh schema at each call; all are dropped after the test."""
    made: list[str] = []

    def fresh() -> str:
        schema = f"hub_test_{uuid.uuid4().hex[:12]}"
        made.append(schema)
        return schema_url(schema, postgres_server)

    yield fresh
    for schema in made:
        drop_schema(schema)


@pytest.fixture
def postgres_url(postgres_schemas: Callable[[], str]) -> str:
    """`postgresql://...?schema=hub_test_<hex>`: a schema of this test's own, dropped after it."""
    return postgres_schemas()


# ---- a database of a test's own, for logical replication (the `postgres` source) ---------------------------------


async def _wal_level() -> str:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        return str(await conn.fetchval("SHOW wal_level", timeout=30))
    finally:
        await conn.close(timeout=10)


def database_url(database: str, base: str = POSTGRES_URL) -> str:
    """`base` pointing at another database of the same server."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(base)._replace(path=f"/{database}"))


def drop_database(database: str) -> None:
    """Drop the database, its replication slots first (a slot still streamed: its connection is ended)."""
    run_sync(
        _execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            f"WHERE database = '{database}' AND active_pid IS NOT NULL"
        )
    )
    run_sync(_drop_slots(database))
    run_sync(_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


async def _drop_slots(database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        for _ in range(100):  # an ended walsender releases its slot a moment later
            slots = await conn.fetch("SELECT slot_name, active FROM pg_replication_slots WHERE database = $1", database)
            if not slots:
                return
            for slot in slots:
                if not slot["active"]:
                    await conn.execute("SELECT pg_drop_replication_slot($1)", slot["slot_name"], timeout=30)
            await asyncio.sleep(0.1)
        raise AssertionError(f"the replication slots of {database} stayed active")
    finally:
        await conn.close(timeout=10)


@pytest.fixture(scope="session")
def logical_postgres(postgres_server: str) -> str:
    """The machine's PostgreSQL, once it is known to allow logical replication; a clear failure if it does not."""
    level = run_sync(_wal_level())
    if level != "logical":
        pytest.fail(
            f"PostgreSQL at {postgres_server} has wal_level = {level}; the postgres source's tests need logical: run "
            'psql -U postgres -c "ALTER SYSTEM SET wal_level = logical" and restart the server (Debian: '
            "pg_ctlcluster <version> main restart)",
            pytrace=False,
        )
    return postgres_server


@pytest.fixture
def postgres_database(logical_postgres: str) -> Iterator[str]:
    """The URL of a fresh database of this test's own; dropped after it, with its replication slots."""
    database = f"hub_test_{uuid.uuid4().hex[:12]}"
    run_sync(_execute(f'CREATE DATABASE "{database}"'))
    try:
        yield database_url(database, logical_postgres)
    finally:
        drop_database(database)
