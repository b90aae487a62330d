"""The `postgres` source's record encoder (connectors/postgres/encoded.py): for every shape of change it takes,
its JSON is byte for byte msgspec's encoding of the record `stream_record` lays out, its Keys' JSON is the order
key the long way gives (key-hash lanes route on it), and it leaves (None) every change it cannot take."""

from __future__ import annotations

import itertools
import random
import struct

import msgspec
import pytest

from connectors.postgres.encoded import record_encoder, the_long_way
from connectors.postgres.events import Table, stream_record
from connectors.postgres.pgoutput import Column, Relation, decode
from connectors.postgres.values import Types

VIEWS = ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY")
ARN = 'arn:aws:dynamodb:eu-west-1:123456789012:table/db.public.t "q"/stream/s'
COLUMNS = (  # name, type oid, a few values (text form; None for NULL)
    ("id", 20, ["1", "-42", "9223372036854775807"]),
    ("note", 25, ["", "plain", 'quote " and \\ back', "tab\tnew\nline\x01", "é ü 😀 \u2028", None]),
    ("price", 1700, ["42.50", "-0.001", "NaN", "Infinity", "-Infinity", "1e-7", None]),
    ("paid", 16, ["t", "f", None]),
    ("tags", 1009, ["{gift,express}", "{}", '{"a b",NULL}', None]),
    ("doc", 3802, ['{"a": [1, 2.50, "x", null, true]}', "[]", '"s"', None]),
    ("blob", 17, ["\\x00ff10", None]),
    ("at", 1184, ["2026-12-05 13:32:12.123+00", None]),
    ('weird name "x"', 2950, ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None]),
)


def value(text: str | None) -> bytes:
    if text is None:
        return b"n"
    data = text.encode()
    return b"t" + struct.pack("!i", len(data)) + data


def tuple_data(values: list[str | None]) -> bytes:
    return struct.pack("!h", len(values)) + b"".join(map(value, values))


def table_of(columns: tuple[tuple[str, int, list[str | None]], ...], keys: tuple[int, ...]) -> Table:
    relation = Relation(
        16384, "public", 't "q"', "d", tuple(Column(n, oid, i in keys) for i, (n, oid, _) in enumerate(columns))
    )
    types = Types()
    return Table(relation, [types.converter(oid) for _, oid, _ in columns], keys, ARN)


def messages(rng: random.Random, columns: tuple[tuple[str, int, list[str | None]], ...]) -> list[bytes]:
    """Inserts, updates (with no old row, the old key, the whole old row) and deletes (key, whole row)."""

    def a_row() -> list[str | None]:
        return [rng.choice(values) for _, _, values in columns]

    head = {kind: kind + struct.pack("!I", 16384) for kind in (b"I", b"U", b"D")}
    out = []
    for _ in range(40):
        new, old = a_row(), a_row()
        out += [
            head[b"I"] + b"N" + tuple_data(new),
            head[b"U"] + b"N" + tuple_data(new),
            head[b"U"] + b"K" + tuple_data(old) + b"N" + tuple_data(new),
            head[b"U"] + b"O" + tuple_data(old) + b"N" + tuple_data(new),
            head[b"D"] + b"K" + tuple_data(old),
            head[b"D"] + b"O" + tuple_data(old),
        ]
    return out


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("keys", [(0,), (1, 0), ()])
def test_the_encoded_record_is_the_long_ways_byte_for_byte(view: str, keys: tuple[int, ...]) -> None:
    rng = random.Random(f"{view}{keys}")
    table = table_of(COLUMNS, keys)
    encode = record_encoder(table, view, "eu-west-1")
    created = 1735689600.123
    for i, data in enumerate(messages(rng, COLUMNS)):
        sequence = (0x1A2B3C << 32) + i + 1
        found = encode(data, sequence, msgspec.json.encode(created), len(data))
        assert found is not None, data
        payload, key_json = stream_record(table, decode(data), sequence, created, view, "eu-west-1", len(data))
        assert found == (msgspec.json.encode(payload), key_json)
        assert found == the_long_way(table, data, sequence, created, view, "eu-west-1")


def test_tables_of_one_column_and_of_none() -> None:
    for columns in (COLUMNS[:1], ()):
        table = table_of(columns, (0,) if columns else ())
        encode = record_encoder(table, "NEW_AND_OLD_IMAGES", "us-east-1")
        data = b"I" + struct.pack("!I", 16384) + b"N" + tuple_data(["7"] * len(columns))
        payload, key_json = stream_record(table, decode(data), 5, 1.5, "NEW_AND_OLD_IMAGES", "us-east-1", len(data))
        assert encode(data, 5, b"1.5", len(data)) == (msgspec.json.encode(payload), key_json)


def test_what_it_cannot_take_it_leaves_to_the_long_way() -> None:
    table = table_of(COLUMNS[:2], (0,))
    encode = record_encoder(table, "NEW_AND_OLD_IMAGES", "us-east-1")
    head = b"U" + struct.pack("!I", 16384)
    whole = head + b"N" + tuple_data(["1", "x"])
    assert encode(whole, 1, b"1.0", 10) is not None
    unchanged = head + b"O" + tuple_data(["1", "x"]) + b"N" + struct.pack("!h", 2) + value("1") + b"u"
    not_utf8 = head + b"N" + struct.pack("!h", 2) + value("1") + b"t" + struct.pack("!i", 2) + b"\xff\xfe"
    wrong_count = head + b"N" + tuple_data(["1"])
    cut_short = whole[:-3]
    binary = head + b"N" + struct.pack("!h", 2) + value("1") + b"b" + struct.pack("!i", 1) + b"x"
    no_new_row = head + b"K" + tuple_data(["1", None])
    for data in (unchanged, not_utf8, wrong_count, cut_short, binary, no_new_row, b"I", b"B" + bytes(20)):
        assert encode(data, 1, b"1.0", 10) is None, data
    # the long way reads the first three (an UNCHANGED value from the old row, bytes that are not UTF-8 as B)
    for data in (unchanged, not_utf8):
        payload, _ = the_long_way(table, data, 1, 1.0, "NEW_AND_OLD_IMAGES", "us-east-1")
        assert msgspec.json.decode(payload)["dynamodb"]["NewImage"]["id"] == {"N": "1"}


def test_every_column_kind_in_every_place() -> None:
    """Each column as the only key, NULL and not, across views: no combination trips the generated code."""
    for key, view in itertools.product(range(len(COLUMNS)), VIEWS):
        table = table_of(COLUMNS, (key,))
        encode = record_encoder(table, view, "us-east-1")
        for values in itertools.zip_longest(*(v for _, _, v in COLUMNS)):
            row = [v if v is not None else None for v in values]
            data = b"I" + struct.pack("!I", 16384) + b"N" + tuple_data(row)
            payload, key_json = stream_record(table, decode(data), 9, 2.0, view, "us-east-1", len(data))
            assert encode(data, 9, b"2.0", len(data)) == (msgspec.json.encode(payload), key_json)
