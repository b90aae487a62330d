"""The kit of the `postgres` connector: the machine's PostgreSQL (wal_level = logical), a database of the kit's own.
A cuttable resource is reached through a TcpProxy (tests.helpers), both its SQL and its replication connection."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from connectors.postgres.config import default_name
from tests.connectors.kit import Kit, Resource, unique
from tests.fixtures_postgres import database_url, drop_database, run_sync
from tests.helpers import TcpProxy


class PostgresKit(Kit):
    """Two tables (`<name>_a`, `<name>_b`: two lanes), each row its own transaction: record n is the INSERT of row n
    into table a (even n) or b (odd n). The publication and the slot are made with the resource, under the names the
    source derives from the mapping's (the resource's), so that rows produced before a source opens are read."""

    type = "postgres"
    ordered = True
    lanes = 2

    def __init__(self, server: str) -> None:
        self.server = server
        self.database = f"hub_test_{uuid.uuid4().hex[:12]}"
        run_sync(_execute(server, f'CREATE DATABASE "{self.database}"'))
        self.url = database_url(self.database, server)
        self.proxies: list[TcpProxy] = []

    def fresh(self, cuttable: bool = False) -> Resource:
        name = unique("suite")
        table = default_name(name)  # lowercase, `_`: a plain SQL name
        slot = default_name(name)
        run_sync(
            _execute(
                self.url,
                f"CREATE TABLE {table}_a (n int PRIMARY KEY)",
                f"CREATE TABLE {table}_b (n int PRIMARY KEY)",
                f"CREATE PUBLICATION {slot} FOR TABLE {table}_a, {table}_b",
                f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')",
            )
        )
        url = self.url
        extra: dict[str, Any] = {}
        if cuttable:
            proxy = TcpProxy(urlsplit(self.url).port or 5432)
            self.proxies.append(proxy)
            url = self.url.replace(f":{urlsplit(self.url).port or 5432}/", f":{proxy.port}/")
            extra["proxy"] = proxy
        return Resource(name, {**extra, "url": url, "table": table})

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        table = resource.extra["table"]
        statements = [f"INSERT INTO {table}_{'ab'[n % 2]} VALUES ({n})" for n in numbers]
        run_sync(_execute(self.url, *statements))

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [(r["eventSourceARN"], int(r["dynamodb"]["Keys"]["n"]["N"])) for r in event["Records"]]

    def source(self, resource: Resource) -> dict[str, Any]:
        table = resource.extra["table"]
        return {
            "type": "postgres",
            "url": resource.extra["url"],
            "tables": [f"{table}_a", f"{table}_b"],
            "status_interval": "200ms",
            "receive_timeout": "5s",
            "connect_timeout": "5s",
        }

    def cut(self, resource: Resource) -> None:
        resource.extra["proxy"].cut()

    def restore(self, resource: Resource) -> None:
        resource.extra["proxy"].restore()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        drop_database(self.database)


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:  # each its own transaction
            await conn.execute(statement, timeout=30)
    finally:
        await conn.close(timeout=10)
