"""A change's pgoutput message straight to the JSON of its DynamoDB Streams record, without the Python objects in
between: the fast path of the `postgres` source.

`stream_record` (events.py) decodes a message into a Change, lays its rows out as attribute-value dicts, and the
invocation then encodes those as JSON for the execution environment: three passes over every change, which cost
the hub more than everything else it does per change. `record_encoder(table, ...)` makes one function for a table
(generated code, as `events._images_of` does) that reads the row out of the message bytes and writes the record's
JSON text directly, byte for byte what encoding `stream_record`'s payload with msgspec gives (the tests compare
them); the record then carries it as `msgspec.Raw` (see `hub.records.plain`).

It takes the common case and answers None for the rest, which the source then reads the long way: a value left
UNCHANGED (an update that did not touch a TOASTed column), a text that is not UTF-8, a row whose column count is
not the table's, a message cut short, anything it does not expect. None is never an error: the long way says what
is wrong with a message that is.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring  # C; the same bytes as msgspec's strings (the tests check)
from typing import Any

import msgspec

from connectors.postgres import values
from connectors.postgres.events import EVENT_NAMES, NEW_VIEWS, OLD_VIEWS, Table, stream_record
from connectors.postgres.pgoutput import Change, decode

Encoder = Callable[[bytes, int, str, str, int], "tuple[bytes, bytes] | None"]
"""`encode(message, sequence, sequence_text, created_json, size)`: the record's JSON and its Keys' JSON (the order
key), or None for a change to read the long way."""

_encode = msgspec.json.Encoder().encode
_FRAGMENTS: dict[Callable[[str], dict[str, Any]], str] = {
    # PostgreSQL writes integers as digits and a sign, floats and numerics also with `.`, `e` and `+` (or as NaN,
    # Infinity, -Infinity): text that is its own JSON string body; other text is escaped
    values.integer: "'{{\"N\":\"' + {v} + '\"}}'",
    values.floating: "('{{\"S\":\"' if {v}[-1] in 'Ny' else '{{\"N\":\"') + {v} + '\"}}'",
    values.string: "'{{\"S\":' + esc({v}) + '}}'",
    values.boolean: "('{{\"BOOL\":true}}' if {v} in ('t', 'true') else '{{\"BOOL\":false}}')",
}


def _lit(text: str) -> str:
    """A Python literal of `text` for the generated code (repr: nothing in it runs)."""
    return repr(text)


def record_encoder(table: Table, view: str, region: str) -> Encoder:
    """The fast path of `stream_record` for one table, view type and region."""
    names = table.names
    count = len(names)
    scope: dict[str, Any] = {
        "u32": struct.Struct("!i").unpack_from,
        "esc": encode_basestring,
        "enc": _encode,
        "struct_error": struct.error,
    }
    lines = [
        "def row(data, at):",
        f"    if data[at] != {count >> 8} or data[at + 1] != {count & 0xFF}:",
        "        return None",
        "    at += 2",
    ]
    for i, convert in enumerate(table.converters):
        fragment = _FRAGMENTS.get(convert)
        if fragment is None:
            scope[f"c{i}"] = convert
            fragment = f"enc(c{i}({{v}})).decode()"
        value = fragment.format(v=f"v{i}")
        lines += [
            "    kind = data[at]",
            "    if kind == 116:",
            "        (n,) = u32(data, at + 1)",
            "        at += 5",
            f"        v{i} = data[at:at + n].decode()",
            "        at += n",
            f"        f{i} = {value}",
            "    elif kind == 110:",
            "        at += 1",
            f"        f{i} = '{{\"NULL\":true}}'",
            "    else:",
            "        return None",
        ]
    fragments = ", ".join(f"f{i}" for i in range(count))
    lines += [f"    return ({fragments}{',' if count == 1 else ''}), at"]

    def layout(columns: Sequence[int]) -> str:
        entries = [
            f"{_lit(('{' if n == 0 else ',') + _encode(names[i]).decode() + ':')} + r[{i}]"
            for n, i in enumerate(columns)
        ]
        return " + ".join(entries) + " + '}'" if entries else "'{}'"

    lines += [
        "def image(r):",
        f"    return {layout(range(count))}",
        "def keys(r):",
        f"    return {layout(table.keys)}",
    ]
    scope["heads"] = {
        ord(kind): _encode(
            {"eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": region}
        )[1:-1].decode()
        for kind, name in EVENT_NAMES.items()
    }
    tail = _encode({"StreamViewType": view})[1:-1].decode() + "}," + _encode({"eventSourceARN": table.arn})[1:].decode()
    lines += [
        "def parse(data):",  # (kind, new row, old row, whether the old row is whole) or None
        "    kind = data[0]",
        "    if kind not in heads:",
        "        return None",
        "    at = 5",
        "    marker = data[at]",
        "    old = None",
        "    full = False",
        "    if marker == 75 or marker == 79:",  # K: the old key, O: the old row (REPLICA IDENTITY FULL)
        "        found = row(data, at + 1)",
        "        if found is None:",
        "            return None",
        "        old, at = found",
        "        full = marker == 79",
        "        marker = data[at] if at < len(data) else 0",
        "    new = None",
        "    if marker == 78:",
        "        found = row(data, at + 1)",
        "        if found is None:",
        "            return None",
        "        new, at = found",
        "    elif kind != 68 or old is None:",
        "        return None",
        "    if at > len(data):",
        "        return None",
        "    return kind, new, old, full",
        "def encode(data, sequence, item, created, size):",
        "    try:",
        "        found = parse(data)",
        "    except (IndexError, struct_error, UnicodeDecodeError):",  # cut short, not UTF-8: the long way says
        "        return None",
        "    if found is None:",
        "        return None",
        "    kind, new, old, full = found",
        "    head = heads[kind]",
        "    key = keys(new if new is not None else old)",
        "    parts = [OPEN, '%032x' % sequence, '\",', head, DYNAMODB, created, KEYS, key]",
    ]
    if view in NEW_VIEWS:
        lines += ["    if new is not None:", "        parts += (NEW_IMAGE, image(new))"]
    if view in OLD_VIEWS:
        lines += ["    if full:", "        parts += (OLD_IMAGE, image(old))"]
    lines += [
        "    parts += (SEQUENCE, item, SIZE, str(size), TAIL)",
        "    return ''.join(parts).encode(), key.encode()",
    ]
    scope.update(
        OPEN='{"eventID":"',
        DYNAMODB=',"dynamodb":{"ApproximateCreationDateTime":',
        KEYS=',"Keys":',
        NEW_IMAGE=',"NewImage":',
        OLD_IMAGE=',"OldImage":',
        SEQUENCE=',"SequenceNumber":"',
        SIZE='","SizeBytes":',
        TAIL=f",{tail}",
    )
    exec(compile("\n".join(lines), f"<record encoder of {table.qualified}>", "exec"), scope)  # literals by repr()
    encode: Encoder = scope["encode"]
    return encode


def the_long_way(
    table: Table, data: bytes, sequence: int, created: float, view: str, region: str
) -> tuple[bytes, bytes]:
    """A change the encoder left: decoded, laid out as dicts (`stream_record`), encoded. Raises ProtocolError for a
    message that cannot be read."""
    change = decode(data)
    if type(change) is not Change:
        raise ValueError(f"a message of kind {data[:1]!r} read as a change")
    payload, key_json = stream_record(table, change, sequence, created, view, region, len(data))
    return _encode(payload), key_json
