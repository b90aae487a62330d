"""The `postgres` connector in-process, against the machine's PostgreSQL (wal_level = logical): each test has a
database of its own (tests/fixtures_postgres.py), dropped after it with its replication slots."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from aws_lambda_powertools.utilities.parser import models
from aws_lambda_powertools.utilities.parser.models.dynamodb import DDBStreamBatchInfo

from connectors.postgres import CONNECTOR, PostgresConfig, PostgresSource
from connectors.postgres.admin import SetupError
from hub.checkpoints import MemoryStore
from hub.filtering import FilterSet
from hub.records import Outcome, Record, plain
from hub.source import SourceContext
from tests.event_models import conforms
from tests.fixtures_postgres import database_url, drop_database
from tests.helpers import read_n, running

ORDERS = "CREATE TABLE orders (id int PRIMARY KEY, note text, total numeric, tags text[], extra jsonb)"


def pg_source(url: str, store: MemoryStore | None = None, mapping: str = "orders", **settings: Any) -> PostgresSource:
    config = PostgresConfig.model_validate({"type": "postgres", "url": url, "tables": ["orders"], **settings})
    context = SourceContext(
        mapping=mapping, store=store or MemoryStore(), region="eu-west-1", account_id="123456789012"
    )
    source = CONNECTOR.build(config, context)
    assert isinstance(source, PostgresSource)
    return source


async def sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement, timeout=30)
    finally:
        await conn.close()


async def fetch(url: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return list(await conn.fetch(query, *args, timeout=30))
    finally:
        await conn.close()


def body(record: Record) -> Any:
    """A record as the function gets it (the source keeps its JSON)."""
    return msgspec.json.decode(record.payload)


def changes(records: list[Record]) -> list[tuple[str, int]]:
    return [(body(r)["eventName"], int(body(r)["dynamodb"]["Keys"]["id"]["N"])) for r in records]


async def confirmed(url: str, slot: str = "eventhub_orders") -> int:
    (row,) = await fetch(
        url,
        "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint FROM pg_replication_slots WHERE slot_name=$1",
        slot,
    )
    return int(row[0])


async def wait_until(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_insert_update_delete_arrive_as_insert_modify_remove_with_old_and_new_images(
    postgres_database: str,
) -> None:
    await sql(postgres_database, ORDERS)
    source = pg_source(postgres_database, replica_identity_full=True)
    async with running(source) as run:
        lane = await run.lane("public.orders")
        await sql(
            postgres_database,
            "INSERT INTO orders VALUES (1, 'new', 10.50, '{a,b}', '{\"k\": [1, true, null]}')",
            "UPDATE orders SET note = 'paid' WHERE id = 1",
            "DELETE FROM orders WHERE id = 1",
        )
        records = await read_n(lane, 3)
        event = plain(source.render(records, 1))
    assert changes(records) == [("INSERT", 1), ("MODIFY", 1), ("REMOVE", 1)]
    conforms(models.DynamoDBStreamModel, event)
    insert, modify, remove = (body(r)["dynamodb"] for r in records)
    row = {
        "id": {"N": "1"},
        "note": {"S": "new"},
        "total": {"N": "10.50"},
        "tags": {"L": [{"S": "a"}, {"S": "b"}]},
        "extra": {"M": {"k": {"L": [{"N": "1"}, {"BOOL": True}, {"NULL": True}]}}},
    }
    assert insert["NewImage"] == row and "OldImage" not in insert
    assert modify["OldImage"] == row and modify["NewImage"] == {**row, "note": {"S": "paid"}}
    assert remove["OldImage"] == {**row, "note": {"S": "paid"}} and "NewImage" not in remove
    assert all(body(r)["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES" for r in records)
    sequences = [int(body(r)["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    assert [r.item_id for r in records] == [str(s) for s in sequences]
    first = body(records[0])
    assert first["eventSource"] == "aws:dynamodb" and first["awsRegion"] == "eu-west-1"
    database = postgres_database.rsplit("/", 1)[1]
    arn = f"arn:aws:dynamodb:eu-west-1:123456789012:table/{database}.public.orders/stream/eventhub_orders"
    assert first["eventSourceARN"] == arn
    assert first["eventID"] == f"{sequences[0]:032x}"
    assert records[0].timestamp == pytest.approx(insert["ApproximateCreationDateTime"], abs=0.001)
    info = source.batch_info(records)
    assert info["DDBStreamBatchInfo"]["shardId"] == "public.orders"
    assert info["DDBStreamBatchInfo"]["startSequenceNumber"] == str(sequences[0])
    DDBStreamBatchInfo.model_validate(info["DDBStreamBatchInfo"])
    # filters see the record as the function does (data key `dynamodb`)
    paid = FilterSet.compile([{"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"note": {"S": ["paid"]}}}}])
    assert [paid.matches(source.filter_view(r)) for r in records] == [False, True, False]


async def test_text_that_is_not_utf8_arrives_as_binary_and_the_stream_goes_on(logical_postgres: str) -> None:
    """A SQL_ASCII database stores whatever bytes a client sends as text, and pgoutput passes them on: a value that
    is not UTF-8 is delivered as the bytes it is (a DynamoDB binary value, `B`) rather than stalling the slot."""
    database = f"hub_test_{uuid.uuid4().hex[:12]}"
    await sql(
        logical_postgres,
        f"CREATE DATABASE \"{database}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    url = database_url(database, logical_postgres)
    try:
        await sql(url, ORDERS, "ALTER TABLE orders REPLICA IDENTITY FULL")
        source = pg_source(url)
        async with running(source) as run:
            lane = await run.lane("public.orders")
            await sql(
                url,
                "INSERT INTO orders (id, note) VALUES (1, E'caf\\xe9')",
                "UPDATE orders SET total = 2 WHERE id = 1",
                "INSERT INTO orders (id, note) VALUES (2, 'plain')",
            )
            records = await read_n(lane, 3)
        assert changes(records) == [("INSERT", 1), ("MODIFY", 1), ("INSERT", 2)]
        binary = {"B": base64.b64encode(b"caf\xe9").decode()}
        assert body(records[0])["dynamodb"]["NewImage"]["note"] == binary
        assert body(records[1])["dynamodb"]["OldImage"]["note"] == binary
        modified = body(records[1])["dynamodb"]["NewImage"]
        assert (modified["note"], modified["total"], modified["tags"]) == (binary, {"N": "2"}, {"NULL": True})
        assert body(records[1])["dynamodb"]["Keys"] == {"id": {"N": "1"}}
        assert body(records[2])["dynamodb"]["NewImage"]["note"] == {"S": "plain"}
    finally:
        drop_database(database)


@pytest.mark.parametrize("view", ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"])
async def test_each_view_type_carries_its_images(postgres_database: str, view: str) -> None:
    await sql(postgres_database, ORDERS, "ALTER TABLE orders REPLICA IDENTITY FULL")
    source = pg_source(postgres_database, stream_view_type=view)
    async with running(source) as run:
        lane = await run.lane()
        await sql(
            postgres_database,
            "INSERT INTO orders (id, note) VALUES (7, 'a')",
            "UPDATE orders SET note = 'b' WHERE id = 7",
            "DELETE FROM orders WHERE id = 7",
        )
        records = await read_n(lane, 3)
    conforms(models.DynamoDBStreamModel, plain(source.render(records, 1)))
    images = [sorted(k for k in ("NewImage", "OldImage") if k in body(r)["dynamodb"]) for r in records]
    new = view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
    old = view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
    assert images == [
        ["NewImage"] if new else [],
        sorted(["NewImage"] * new + ["OldImage"] * old),
        ["OldImage"] if old else [],
    ]
    assert all(body(r)["dynamodb"]["Keys"] == {"id": {"N": "7"}} for r in records)


async def test_without_replica_identity_full_there_is_no_old_image(postgres_database: str) -> None:
    await sql(postgres_database, ORDERS)
    source = pg_source(postgres_database)
    async with running(source) as run:
        lane = await run.lane()
        await sql(
            postgres_database,
            "INSERT INTO orders (id, note) VALUES (3, 'a')",
            "UPDATE orders SET note = 'b' WHERE id = 3",
            "DELETE FROM orders WHERE id = 3",
        )
        records = await read_n(lane, 3)
    assert [("OldImage" in body(r)["dynamodb"]) for r in records] == [False, False, False]
    assert body(records[2])["dynamodb"]["Keys"] == {"id": {"N": "3"}}
    assert body(records[1])["dynamodb"]["NewImage"]["note"] == {"S": "b"}


async def test_column_types_become_dynamodb_attribute_values(postgres_database: str) -> None:
    await sql(
        postgres_database,
        "CREATE TYPE mood AS ENUM ('sad', 'happy')",
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0)",
        "CREATE TABLE orders (id bigint PRIMARY KEY, flag boolean, small smallint, ratio double precision, "
        "nan real, blob bytea, doc json, grid int[][], words text[], feeling mood, feelings mood[], count positive, "
        "price money, at timestamptz, uid uuid, empty text)",
    )
    source = pg_source(postgres_database)
    async with running(source) as run:
        lane = await run.lane()
        await sql(
            postgres_database,
            "INSERT INTO orders VALUES (9007199254740993, true, -3, 1.5e-7, 'NaN', '\\x00ff2a', "
            '\'[1.10, "x", {"a": false}]\', \'{{1,2},{3,NULL}}\', \'{"a b","c\\"d",NULL}\', \'happy\', '
            "'{sad,happy}', 5, 12.5, '2026-01-02 03:04:05+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL)",
        )
        (record,) = await read_n(lane, 1)
    image = body(record)["dynamodb"]["NewImage"]
    assert image["id"] == {"N": "9007199254740993"}
    assert image["flag"] == {"BOOL": True}
    assert image["small"] == {"N": "-3"}
    assert image["ratio"] == {"N": "1.5e-07"}
    assert image["nan"] == {"S": "NaN"}  # no DynamoDB number is NaN
    assert image["blob"] == {"B": "AP8q"}
    assert image["doc"] == {"L": [{"N": "1.10"}, {"S": "x"}, {"M": {"a": {"BOOL": False}}}]}
    assert image["grid"] == {"L": [{"L": [{"N": "1"}, {"N": "2"}]}, {"L": [{"N": "3"}, {"NULL": True}]}]}
    assert image["words"] == {"L": [{"S": "a b"}, {"S": 'c"d'}, {"NULL": True}]}
    assert image["feeling"] == {"S": "happy"}
    assert image["feelings"] == {"L": [{"S": "sad"}, {"S": "happy"}]}
    assert image["count"] == {"N": "5"}  # a domain is its base type
    assert image["price"]["S"].endswith("12.50")  # money's text is no number
    assert image["at"] == {"S": "2026-01-02 03:04:05+00"}
    assert image["uid"] == {"S": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}
    assert image["empty"] == {"NULL": True}
    conforms(models.DynamoDBStreamModel, plain(source.render([record], 1)))


async def test_each_table_is_a_lane_in_commit_order_and_key_hashes_keep_order_per_key(
    postgres_database: str,
) -> None:
    await sql(postgres_database, ORDERS, "CREATE TABLE items (id int PRIMARY KEY, note text)")
    source = pg_source(postgres_database, tables=["orders", "public.items"], lanes_per_table=3)
    async with running(source) as run:
        await run.lane("public.items#2")
        assert sorted(run.lanes) == [f"public.{t}#{i}" for t in ("items", "orders") for i in range(3)]
        conn = await asyncpg.connect(postgres_database)
        try:
            # two transactions interleaved: the second commits first, so its changes come first
            first = conn.transaction()
            await first.start()
            await conn.execute("INSERT INTO orders (id) SELECT g FROM generate_series(1, 30) g")
            await sql(postgres_database, "INSERT INTO items (id) SELECT g FROM generate_series(1, 30) g")
            await first.commit()
            await conn.execute("UPDATE orders SET note = 'x'")
            await conn.execute("DELETE FROM items WHERE id % 2 = 0")
        finally:
            await conn.close()
        got: dict[str, list[Record]] = {}
        for key, lane in run.lanes.items():
            table = key.split("#")[0]
            got.setdefault(table, [])
            got[table] += await lane.read(100, 0.5)
        for key, lane in run.lanes.items():
            got[key.split("#")[0]] += await lane.read(100, 0.2)
    assert len(got["public.orders"]) == 60 and len(got["public.items"]) == 45
    for records in got.values():
        by_key: dict[int, list[str]] = {}
        for name, row in changes(records):
            by_key.setdefault(row, []).append(name)
        assert all(names in (["INSERT", "MODIFY"], ["INSERT", "REMOVE"], ["INSERT"]) for names in by_key.values())
        lanes = {r.lane for r in records}
        assert len(lanes) == 3  # the keys spread over the lanes
    items_first = min(int(r.item_id) for r in got["public.items"])
    assert items_first < min(int(r.item_id) for r in got["public.orders"])  # commit order across tables


async def test_the_slot_is_confirmed_only_past_changes_every_lane_settled_and_a_restart_skips_what_settled(
    postgres_database: str,
) -> None:
    await sql(postgres_database, ORDERS, "CREATE TABLE items (id int PRIMARY KEY, note text)")
    store = MemoryStore()
    source = pg_source(postgres_database, store, tables=["orders", "items"])
    async with running(source) as run:
        orders, items = await run.lane("public.orders"), await run.lane("public.items")
        start = await confirmed(postgres_database)
        # two transactions, each with a change in both lanes
        await sql(postgres_database, "BEGIN; INSERT INTO items VALUES (1); INSERT INTO orders VALUES (1); COMMIT")
        await sql(postgres_database, "BEGIN; INSERT INTO orders VALUES (2); INSERT INTO items VALUES (2); COMMIT")
        early = await read_n(items, 2)
        later = await read_n(orders, 2)
        await orders.settle(Outcome(succeeded=tuple(later)))  # orders 1 and 2 settled; item 1, before them, not
        await asyncio.sleep(0.6)  # several status updates' time: the slot must still not pass item 1
        assert await confirmed(postgres_database) == start
        await items.settle(Outcome(succeeded=(early[0],), failed=(early[1],)))
        await wait_until(lambda: _moved(postgres_database, start), what="the slot to move past the first transaction")
        assert [r.position for r in await read_n(items, 1)] == [early[1].position]  # a failed record comes again first
        moved = await confirmed(postgres_database)
        # nor do the server's keepalives (it sends them while the slot is behind what it sent) move it past item 2
        await asyncio.sleep(1.5)
        assert await confirmed(postgres_database) == moved
    assert await store.get_all("orders/postgres/" + postgres_database.rsplit("/", 1)[1] + "/eventhub_orders") == {
        "public.orders": str(later[1].position),
        "public.items": str(early[0].position),
    }
    # a restart: the slot sends again from its confirmed LSN (item 2's transaction, with order 2 in it), and the
    # orders lane skips order 2, which it had settled
    async with running(pg_source(postgres_database, store, tables=["orders", "items"])) as run:
        again = await read_n(await run.lane("public.items"), 1)
        assert changes(again) == [("INSERT", 2)]
        assert await (await run.lane("public.orders")).read(10, 0.5) == []


async def _moved(url: str, start: int) -> bool:
    return await confirmed(url) > start


async def test_the_slots_lag_is_shown(postgres_database: str) -> None:
    await sql(postgres_database, ORDERS)
    source = pg_source(postgres_database, lag_interval="100ms")
    async with running(source) as run:
        lane = await run.lane()
        await sql(
            postgres_database, "INSERT INTO orders (id, note) SELECT g, repeat('x', 500) FROM generate_series(1, 200) g"
        )
        records = await read_n(lane, 200)
        lag = await source.slot_lag()
        assert lag["slot_active"] is True and lag["slot_lag_bytes"] > 100_000  # nothing settled: the WAL is held
        shown = await source.lag()  # what /status, /metrics and the history show, per lane
        assert shown[lane.key].replication_lag_bytes is not None and shown[lane.key].replication_lag_bytes > 100_000
        await lane.settle(Outcome(succeeded=tuple(records)))

        async def small() -> bool:
            return (await source.slot_lag())["slot_lag_bytes"] < 100_000

        await wait_until(small, what="the lag to shrink once everything settled")
        assert source.lag_bytes is not None and source.lag_bytes < 100_000
        assert source.last_lag()["slot_lag_bytes"] == source.lag_bytes  # what the periodic read left for /status


async def test_create_false_names_what_is_missing(postgres_database: str) -> None:
    await sql(postgres_database, ORDERS)
    source = pg_source(postgres_database, create=False)
    with pytest.raises(SetupError, match="no publication 'eventhub_orders'"):
        await source.open()
    await source.close()
    await sql(postgres_database, "CREATE PUBLICATION eventhub_orders FOR TABLE orders")
    with pytest.raises(SetupError, match="no replication slot 'eventhub_orders'"):
        await source.open()
    await source.close()
    missing = pg_source(postgres_database, tables=["nowhere"])
    with pytest.raises(SetupError, match=r"no table public\.nowhere"):
        await missing.open()
    await missing.close()


def test_the_sample_event_is_what_the_source_renders() -> None:
    sample = CONNECTOR.sample_event()
    conforms(models.DynamoDBStreamModel, sample)
    assert json.loads(json.dumps(sample)) == sample


async def test_past_max_buffered_it_stops_reading_and_keeps_the_connection(postgres_database: str) -> None:
    await sql(postgres_database, ORDERS)
    source = pg_source(postgres_database, max_buffered=100, status_interval="100ms", receive_timeout="500ms")
    async with running(source) as run:
        lane = await run.lane()
        await sql(postgres_database, "INSERT INTO orders (id) SELECT g FROM generate_series(1, 300) g")

        async def full() -> bool:
            return lane.waiting == 100

        await wait_until(full, what="the buffer to fill")
        # nothing read for three receive timeouts: the status updates keep the connection, and no more is read
        await asyncio.sleep(1.5)
        assert lane.waiting == 100 and run.source._tasks[0].done() is False
        seen: list[Record] = []
        while len(seen) < 300:
            records = await lane.read(100, 5)
            assert records, f"stalled after {len(seen)}"
            seen += records
            await lane.settle(Outcome(succeeded=tuple(records)))
    assert [int(body(r)["dynamodb"]["Keys"]["id"]["N"]) for r in seen] == list(range(1, 301))
