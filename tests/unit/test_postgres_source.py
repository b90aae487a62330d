"""The pure parts of the `postgres` connector: the pgoutput decoder (on messages built here as PostgreSQL writes
them), the conversion of column values, the settings, and the slot's confirmed position across lanes."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.postgres.config import PostgresConfig, default_name, split_table
from connectors.postgres.lanes import SEQUENCE_SHIFT, Transactions
from connectors.postgres.pgoutput import (
    UNCHANGED,
    Begin,
    Change,
    Commit,
    Other,
    ProtocolError,
    Relation,
    Truncate,
    decode,
    timestamp,
)
from connectors.postgres.values import Types, binary, json_value, number, parse_array
from hub import redact
from hub.records import Record


def text(value: str) -> bytes:
    data = value.encode()
    return b"t" + struct.pack("!i", len(data)) + data


def row(*columns: bytes) -> bytes:
    return struct.pack("!h", len(columns)) + b"".join(columns)


def test_begin_commit_and_relation_messages() -> None:
    begin = decode(b"B" + struct.pack("!QqI", 0x1A2B, 1_000_000, 77))
    assert begin == Begin(0x1A2B, timestamp(1_000_000), 77) and begin.commit_time == 946684801.0
    assert decode(b"C" + struct.pack("!bQQq", 0, 0x1A2B, 0x1A60, 0)) == Commit(0x1A2B, 0x1A60, 946684800.0)
    columns = b"".join(
        struct.pack("!b", flags) + name + b"\x00" + struct.pack("!Ii", oid, -1)
        for flags, name, oid in ((1, b"id", 23), (0, b"note", 25))
    )
    relation = decode(b"R" + struct.pack("!I", 16384) + b"public\x00orders\x00d" + struct.pack("!h", 2) + columns)
    assert isinstance(relation, Relation)
    assert (relation.oid, relation.schema, relation.name, relation.identity) == (16384, "public", "orders", "d")
    assert [(c.name, c.type_oid, c.key) for c in relation.columns] == [("id", 23, True), ("note", 25, False)]


def test_insert_update_delete_and_truncate_messages() -> None:
    insert = decode(b"I" + struct.pack("!I", 5) + b"N" + row(text("1"), b"n", text("é")))
    assert insert == Change("I", 5, ("1", None, "é"), None, None)
    update = decode(b"U" + struct.pack("!I", 5) + b"O" + row(text("1"), text("a")) + b"N" + row(text("1"), b"u"))
    assert update == Change("U", 5, ("1", UNCHANGED), ("1", "a"), "O")
    plain = decode(b"U" + struct.pack("!I", 5) + b"N" + row(text("2")))
    assert isinstance(plain, Change) and plain.old is None and plain.new == ("2",)
    delete = decode(b"D" + struct.pack("!I", 5) + b"K" + row(text("1"), b"n"))
    assert delete == Change("D", 5, None, ("1", None), "K")
    assert decode(b"T" + struct.pack("!ib", 2, 0) + struct.pack("!II", 5, 6)) == Truncate((5, 6))
    assert decode(b"O" + struct.pack("!Q", 1) + b"origin\x00") == Other("O")


def test_a_message_cut_short_or_a_binary_value_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="could not be read"):
        decode(b"I" + struct.pack("!I", 5) + b"N" + struct.pack("!h", 1) + b"t" + struct.pack("!i", 10) + b"abc")
    with pytest.raises(ProtocolError, match="unknown column kind 'b'"):
        decode(b"I" + struct.pack("!I", 5) + b"N" + row(b"b" + struct.pack("!i", 1) + b"\x01"))
    with pytest.raises(ProtocolError, match="without its new row"):
        decode(b"I" + struct.pack("!I", 5) + b"X")


def test_arrays_numbers_json_and_bytea() -> None:
    assert parse_array("{}") == []
    assert parse_array('{1,NULL,"NULL"," a,b ","q\\"x\\\\"}') == ["1", None, "NULL", " a,b ", 'q"x\\']
    assert parse_array("{{1,2},{3,4}}") == [["1", "2"], ["3", "4"]]
    assert parse_array("[0:1]={x,y}") == ["x", "y"]
    with pytest.raises(ValueError, match="not an array"):
        parse_array("{1,2}x")
    assert number("-12.50") == {"N": "-12.50"} and number("1e+100") == {"N": "1e+100"}
    assert number("Infinity") == {"S": "Infinity"} and number("$1.00") == {"S": "$1.00"}
    assert json_value('{"a": 1.0, "b": [true, null, "s"], "c": 12345678901234567890}') == {
        "M": {
            "a": {"N": "1.0"},
            "b": {"L": [{"BOOL": True}, {"NULL": True}, {"S": "s"}]},
            "c": {"N": "12345678901234567890"},
        }
    }
    assert binary("\\x00ff") == {"B": "AP8="}
    assert binary("a\\\\b\\001") == {"B": "YVxiAQ=="}  # bytea_output = 'escape'


def test_types_learned_from_pg_type_domains_enums_and_arrays_of_them() -> None:
    types = Types()
    assert types.missing([23, 90001, 90002, 90003, 23]) == [90001, 90002, 90003]
    types.learn([(90001, "E", 0, 0, None), (90002, "A", 90001, 0, "E"), (90003, "N", 0, 23, None)])
    assert types.converter(90001)("happy") == {"S": "happy"}
    assert types.converter(90002)("{a,NULL}") == {"L": [{"S": "a"}, {"NULL": True}]}
    assert types.converter(90003)("5") == {"N": "5"}
    assert types.converter(1007)("{1,2}") == {"L": [{"N": "1"}, {"N": "2"}]}
    assert types.converter(99999)("x") == {"S": "x"}  # never seen: text


def config(**settings: Any) -> PostgresConfig:
    return PostgresConfig.model_validate({"type": "postgres", "url": "postgresql://hub@db/shop", **settings})


def test_settings() -> None:
    assert split_table("orders") == ("public", "orders")
    assert split_table("Sales.Orders") == ("sales", "orders")
    assert split_table('"Sales"."Order.Lines"') == ("Sales", "Order.Lines")
    with pytest.raises(ValueError, match="not a table name"):
        split_table("a.b.c")
    conf = config(tables="sales.orders")
    assert conf.tables == ["sales.orders"] and conf.database == "shop"
    assert conf.slot_name("orders") == "eventhub_orders" == conf.publication_name("orders")
    assert default_name("Order-Events") == "eventhub_order_events"
    assert len(default_name("x" * 100)) == 63 and default_name("x" * 100) != default_name("x" * 99)
    for bad, message in (
        ({"tables": []}, "at least 1"),
        ({"tables": ["a", "public.a"]}, "listed twice"),
        ({"tables": ["a"], "url": "mysql://db/x"}, "postgresql://"),
        ({"tables": ["a"], "url": "postgresql://db"}, "name the database"),
        ({"tables": ["a"], "slot": "Bad-Name"}, "lowercase"),
        ({"tables": ["a"], "url": "postgresql://u:pw@db/x", "password": "pw"}, "given twice"),
        ({"tables": ["a"], "create": False, "replica_identity_full": True}, "goes with create"),
        ({"tables": ["a"], "stream_view_type": "ALL"}, "KEYS_ONLY"),
    ):
        with pytest.raises(ValidationError, match=message):
            config(**bad)


def test_its_password_is_a_secret() -> None:
    assert "url-pw" in redact.secrets_of(config(tables=["a"], url="postgresql://hub:url-pw@db/shop"))
    field = config(tables=["a"], password="field-pw")
    assert "field-pw" in redact.secrets_of(field) and "field-pw" not in repr(field)


def test_the_slot_is_confirmed_up_to_the_newest_transaction_every_change_before_settled() -> None:
    confirmed: list[int] = []
    txns = Transactions(confirmed.append)

    def record(final_lsn: int, index: int) -> Record:
        return Record("lane", (final_lsn << SEQUENCE_SHIFT) + index, {})

    first = txns.begin(100)
    first.open = 2
    txns.commit(first, 110)
    empty = txns.begin(200)  # a transaction with no change for this mapping
    txns.commit(empty, 210)
    third = txns.begin(300)
    third.open = 1
    assert confirmed == []  # the first has two changes out
    txns.settled([record(100, 2)])
    assert confirmed == []  # settled out of order: the first change of the first is still out
    txns.settled([record(100, 1)])
    assert confirmed == [210] and len(txns) == 1  # past the first and the empty one
    txns.settled([record(300, 1)])
    assert confirmed == [210]  # not committed yet
    txns.commit(third, 320)
    assert confirmed == [210, 320] and len(txns) == 0


def test_an_unchanged_large_value_comes_from_the_old_row_or_is_left_out() -> None:
    from connectors.postgres.events import Table, stream_record
    from connectors.postgres.pgoutput import Column

    relation = Relation(1, "public", "docs", "f", (Column("id", 23, True), Column("body", 25, False)))
    types = Types()
    table = Table(relation, [types.converter(23), types.converter(25)], (0,), "arn")
    full = Change("U", 1, ("1", UNCHANGED), ("1", "long text"), "O")
    payload, keys = stream_record(table, full, 5, 1.5, "NEW_AND_OLD_IMAGES", "us-east-1", 40)
    assert payload["dynamodb"]["NewImage"] == {"id": {"N": "1"}, "body": {"S": "long text"}}
    assert payload["dynamodb"]["OldImage"] == payload["dynamodb"]["NewImage"] and keys == b'{"id":{"N":"1"}}'
    plain = Change("U", 1, ("1", UNCHANGED), None, None)
    payload, _ = stream_record(table, plain, 6, 1.5, "NEW_AND_OLD_IMAGES", "us-east-1", 20)
    assert payload["dynamodb"]["NewImage"] == {"id": {"N": "1"}} and "OldImage" not in payload["dynamodb"]
    assert payload["dynamodb"]["SizeBytes"] == 20 and payload["eventName"] == "MODIFY"


def test_the_images_made_for_a_table_are_those_of_the_column_by_column_conversion() -> None:
    from connectors.postgres.events import Table
    from connectors.postgres.pgoutput import Column

    types = Types()
    columns = [("id", 20, True), ('a "quoted"\\name', 25, False), ("n", 1700, False), ("j", 3802, False)]
    columns += [("é", 1007, False), ("k2", 23, True), ("b", 16, False)]
    relation = Relation(1, "public", "t", "d", tuple(Column(*c) for c in columns))
    table = Table(relation, [types.converter(c[1]) for c in columns], (5, 0), "arn")
    for row in (
        ("1", "x", "1.5", '{"a": [1, null]}', "{1,NULL}", "2", "t"),
        ("1", None, "NaN", None, None, "2", None),
    ):
        assert table.images(row) == (table.key_image(row), table.image(row))
        keys, image = table.images(row)  # type: ignore[misc]
        assert list(keys) == ["k2", "id"] and list(image) == [c[0] for c in columns]  # the JSON's order too
    assert table.images(("1", UNCHANGED, "1", None, None, "2", None)) is None  # an UNCHANGED value: column by column
    no_columns = Table(Relation(2, "public", "empty", "n", ()), [], (), "arn")  # CREATE TABLE empty ()
    assert no_columns.images(()) == ({}, {})
