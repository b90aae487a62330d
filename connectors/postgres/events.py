"""Row changes as DynamoDB Streams records: the shape `connectors/dynamodb.py` emits, validated in the tests against
Powertools' `DynamoDBStreamModel`.

- `eventName`: INSERT, MODIFY (an UPDATE) or REMOVE (a DELETE);
- `eventSource` is `aws:dynamodb`, as DynamoDB sends it, so that handlers (and Powertools' parser, which accepts no
  other value) take the records as they take DynamoDB's; the ARN says where they come from;
- `eventSourceARN`: `arn:aws:dynamodb:<region>:<account>:table/<database>.<schema>.<table>/stream/<slot>`, stable
  across restarts;
- `eventID`: the sequence number in hex: the same change has the same id when it is delivered again;
- `dynamodb.SequenceNumber`: `(commit LSN << 32) + the change's place in its transaction`, in decimal: unique,
  and growing in commit order over every table of the slot;
- `dynamodb.ApproximateCreationDateTime`: the commit time (epoch seconds, to the millisecond);
- `dynamodb.SizeBytes`: the size of the change as PostgreSQL sent it (its pgoutput message);
- `dynamodb.Keys`: the primary key (or, for a table without one, the replica identity's columns);
- `NewImage` / `OldImage` as the view type asks and the change carries: an INSERT has no old row, a DELETE no new
  one; the old row is there only with REPLICA IDENTITY FULL. A column whose large (TOASTed) value an UPDATE did not
  touch is not sent again by PostgreSQL: it is taken from the old row when there is one, else left out of NewImage.
  A text value that is not UTF-8 (a SQL_ASCII database keeps whatever bytes a client sends) is its bytes, as a
  binary value (`{"B": base64}`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from connectors.postgres.pgoutput import UNCHANGED, Change, NotUtf8, Relation, Value

EVENT_NAMES = {"I": "INSERT", "U": "MODIFY", "D": "REMOVE"}
NEW_VIEWS = frozenset({"NEW_IMAGE", "NEW_AND_OLD_IMAGES"})
OLD_VIEWS = frozenset({"OLD_IMAGE", "NEW_AND_OLD_IMAGES"})
ENVELOPE = 300
"""Bytes a record's envelope adds in an invocation payload (eventID, ARN, names, sequence number)."""
PER_VALUE = 16
"""Bytes an attribute value's JSON adds to the column's text (`"name": {"S": "..."}` and escapes, roughly)."""
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Table:
    """What the source knows of one table of the stream: its columns and their conversions, its key, its ARN."""

    relation: Relation
    converters: Sequence[Callable[[str], dict[str, Any]]]
    keys: tuple[int, ...]
    """Indexes of the key columns: the primary key's, else the replica identity's."""
    arn: str
    wanted: bool = True
    """False for a table the publication has but the mapping does not read: its changes are skipped."""
    names: tuple[str, ...] = field(default=())
    qualified: str = ""
    """`schema.table`: the lane's name (with `#i` for key-hash lanes)."""
    lane: Any = None
    """The table's lane, when it has one (`lanes_per_table` 1), set by the source; None: a lane per key hash."""
    extra_size: int = 0
    """Bytes a record of one image adds to its change's message in a payload: ENVELOPE, PER_VALUE per column."""
    extra_size_both: int = 0
    """The same for a record with both images."""
    encode: Any = None
    """The record encoder of the table (encoded.py), set by the source: a change's message straight to its JSON."""
    _row: Callable[[Sequence[Value]], tuple[dict[str, Any], dict[str, Any]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.names = tuple(c.name for c in self.relation.columns)
        self.qualified = f"{self.relation.schema}.{self.relation.name}"
        self.extra_size = ENVELOPE + PER_VALUE * len(self.names)
        self.extra_size_both = ENVELOPE + PER_VALUE * 2 * len(self.names)
        self._row = _images_of(self.names, self.converters, self.keys, self.qualified)

    def images(self, row: Sequence[Value]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The Keys and the image of a whole row at once; None when a value is UNCHANGED (see `image`)."""
        if UNCHANGED in row or len(row) != len(self.names):
            return None
        return self._row(row)

    def image(self, values: Sequence[Value], fallback: Sequence[Value] | None = None) -> dict[str, Any]:
        """A row as attribute values; an UNCHANGED column from `fallback` (the old row) or left out."""
        if UNCHANGED in values:
            values = [
                (fallback[i] if fallback is not None else UNCHANGED) if v is UNCHANGED else v
                for i, v in enumerate(values)
            ]
        return {
            name: _value(convert, value)
            for name, convert, value in zip(self.names, self.converters, values, strict=False)
            if value is not UNCHANGED
        }

    def key_image(self, values: Sequence[Value]) -> dict[str, Any]:
        """The `Keys` of a change: the replica identity's columns, as DynamoDB attribute values."""
        out: dict[str, Any] = {}
        for i in self.keys:
            value = values[i]
            if value is UNCHANGED:
                continue
            out[self.names[i]] = _value(self.converters[i], value)
        return out


def _value(convert: Callable[[str], dict[str, Any]], value: Value) -> dict[str, Any]:
    """A column's attribute value: NULL, the bytes of a text that is not UTF-8 (`B`), or its type's conversion."""
    if value is None:
        return {"NULL": True}
    if type(value) is NotUtf8:
        return {"B": base64.b64encode(value).decode("ascii")}
    return convert(value)  # type: ignore[arg-type]


def _images_of(
    names: Sequence[str], converters: Sequence[Callable[[str], dict[str, Any]]], keys: Sequence[int], table: str
) -> Callable[[Sequence[Value]], tuple[dict[str, Any], dict[str, Any]]]:
    """The Keys and the image of a whole row (no UNCHANGED value) in one function made for the table:
    `{"id": {"NULL": True} if v0 is None else c0(v0), ...}`, dict displays in the table's column order. It runs for
    every change, and displays cost a third of comprehensions over zipped names and converters; the converters are
    those of values.py, called as they are (the generated code only lays the row out)."""

    def display(columns: Iterable[int]) -> str:
        entries = ", ".join(f"{names[i]!r}: {{'NULL': True}} if v{i} is None else c{i}(v{i})" for i in columns)
        return f"{{{entries}}}"

    unpack = "".join(f"v{i}, " for i in range(len(names))) + "= row" if names else "pass"  # a table may have none
    source = f"def images(row):\n    {unpack}\n    return {display(keys)}, {display(range(len(names)))}"
    scope: dict[str, Any] = {f"c{i}": convert for i, convert in enumerate(converters)}
    exec(compile(source, f"<images of {table}>", "exec"), scope)  # the names are literals made by repr()
    images: Callable[[Sequence[Value]], tuple[dict[str, Any], dict[str, Any]]] = scope["images"]
    return images


def stream_record(
    table: Table,
    change: Change,
    sequence: int,
    commit_time: float,
    view: str,
    region: str,
    size: int,
) -> tuple[dict[str, Any], bytes]:
    """The DynamoDB Streams record of one change, and the JSON of its Keys (the order key). `commit_time` is epoch
    seconds rounded to the millisecond; `size` the change's message size, given as SizeBytes."""
    new = change.new
    old_row = change.old if change.old_kind == "O" else None
    key_row = new if new is not None else change.old
    assert key_row is not None
    # its Keys and image at once (None with an UNCHANGED value: column by column, as for a value not UTF-8)
    shown = None if change.not_utf8 else table.images(key_row)
    keys = shown[0] if shown is not None else table.key_image(key_row)
    change_part: dict[str, Any] = {"ApproximateCreationDateTime": commit_time, "Keys": keys}
    if new is not None and view in NEW_VIEWS:
        change_part["NewImage"] = shown[1] if shown is not None else table.image(new, old_row)
    if old_row is not None and view in OLD_VIEWS:
        old_shown = shown if new is None or change.not_utf8 else table.images(old_row)
        change_part["OldImage"] = old_shown[1] if old_shown is not None else table.image(old_row)
    change_part["SequenceNumber"] = str(sequence)
    change_part["SizeBytes"] = size
    change_part["StreamViewType"] = view
    payload = {
        "eventID": f"{sequence:032x}",
        "eventName": EVENT_NAMES[change.kind],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": change_part,
        "eventSourceARN": table.arn,
    }
    return payload, _encode(keys)


def key_columns(relation: Relation, primary_key: Sequence[str]) -> tuple[int, ...]:
    """Indexes of a table's key columns: its primary key's, when the relation has them all, else those the
    Relation message marks as its replica identity."""
    names = [c.name for c in relation.columns]
    if primary_key and all(k in names for k in primary_key):
        return tuple(names.index(k) for k in primary_key)
    return tuple(i for i, c in enumerate(relation.columns) if c.key)


def table_arn(region: str, account: str, database: str, schema: str, table: str, slot: str) -> str:
    """The ARN a table's records carry, in DynamoDB Streams' form (`table/<db.schema.table>/stream/<slot>`)."""
    return f"arn:aws:dynamodb:{region}:{account}:table/{database}.{schema}.{table}/stream/{slot}"


def sample_event() -> dict[str, Any]:
    """An UPDATE of a row of `public.orders`, as the function receives it (NEW_AND_OLD_IMAGES, REPLICA IDENTITY
    FULL)."""
    sequence = (0x1A2B3C4D << 32) + 1
    return {
        "Records": [
            {
                "eventID": f"{sequence:032x}",
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1735689600.123,
                    "Keys": {"id": {"N": "101"}},
                    "NewImage": {
                        "id": {"N": "101"},
                        "status": {"S": "shipped"},
                        "total": {"N": "42.50"},
                        "paid": {"BOOL": True},
                        "tags": {"L": [{"S": "gift"}, {"S": "express"}]},
                        "details": {"M": {"carrier": {"S": "ups"}, "parcels": {"N": "2"}}},
                        "note": {"NULL": True},
                    },
                    "OldImage": {
                        "id": {"N": "101"},
                        "status": {"S": "paid"},
                        "total": {"N": "42.50"},
                        "paid": {"BOOL": True},
                        "tags": {"L": [{"S": "gift"}]},
                        "details": {"M": {}},
                        "note": {"NULL": True},
                    },
                    "SequenceNumber": str(sequence),
                    "SizeBytes": 412,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/shop.public.orders/stream/"
                "eventhub_orders",
            }
        ]
    }
