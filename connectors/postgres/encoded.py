"""A change's pgoutput message straight to the JSON of its DynamoDB Streams record, without the Python objects in
between: the fast path of the `postgres` source.

`stream_record` (events.py) decodes a message into a Change, lays its rows out as attribute-value dicts, and the
invocation then encodes those as JSON for the execution environment: three passes over every change, which cost
the hub more than everything else it does per change. `record_encoder(table, ...)` makes one function for a table
(generated code, as `events._images_of` does) that reads the row out of the message bytes and writes the record's
JSON text directly, byte for byte what encoding `stream_record`'s payload with msgspec gives (the tests compare
them); the record then carries it as `msgspec.Raw` (see `hub.records.plain`). It works in bytes throughout (a
number's text is its own JSON, a text value with nothing to escape is used as it came), and a change with only a
new row (an Insert, an Update without the old one: nearly all of them) is read and written in one function, its
record filled in with one `%`.

It takes the common case and answers None for the rest, which the source then reads the long way: a value left
UNCHANGED (an update that did not touch a TOASTed column), a text that is not UTF-8, a row whose column count is
not the table's, a message cut short, anything it does not expect. None is never an error: the long way says what
is wrong with a message that is.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring  # C; the same bytes as msgspec's strings (the tests check)
from typing import Any

import msgspec

from connectors.postgres import values
from connectors.postgres.events import EVENT_NAMES, NEW_VIEWS, OLD_VIEWS, Table, stream_record
from connectors.postgres.pgoutput import Change, decode

Encoder = Callable[[bytes, int, bytes, int], "tuple[bytes, bytes] | None"]
"""`encode(message, sequence, created_json, size)`: the record's JSON and its Keys' JSON (the order key), or None
for a change to read the long way."""

_encode = msgspec.json.Encoder().encode
_FRAGMENTS: dict[Callable[[str], dict[str, Any]], str] = {
    # PostgreSQL writes integers as digits and a sign, floats and numerics also with `.`, `e` and `+` (or as NaN,
    # Infinity, -Infinity): ASCII that is its own JSON string body, used as the bytes it came as; other text is
    # escaped (`text`: as it is when it is ASCII with nothing to escape, the commonest case)
    values.integer: "b'{{\"N\":\"' + {v} + b'\"}}'",
    values.floating: '(b\'{{"S":"\' if {v}[-1] in (78, 121) else b\'{{"N":"\') + {v} + b\'"}}\'',
    values.string: "text({v})",
    values.boolean: "(b'{{\"BOOL\":true}}' if {v} in (b't', b'true') else b'{{\"BOOL\":false}}')",
}
_ESCAPED = re.compile(rb'[\x00-\x1f\\"]').search
"""What JSON escapes in a string (json.encoder's ESCAPE; msgspec escapes the same)."""


def _text(raw: bytes) -> bytes:
    """A text value's attribute value `{"S": ...}` as JSON; UnicodeDecodeError when it is not UTF-8."""
    if raw.isascii() and _ESCAPED(raw) is None:
        return b'{"S":"' + raw + b'"}'
    return b'{"S":' + encode_basestring(raw.decode()).encode() + b"}"


def _lit(text: bytes) -> str:
    """A Python literal of `text` for the generated code (repr: nothing in it runs)."""
    return repr(text)


def record_encoder(table: Table, view: str, region: str) -> Encoder:
    """The fast path of `stream_record` for one table, view type and region."""
    names = table.names
    count = len(names)
    scope: dict[str, Any] = {
        "u32": struct.Struct("!i").unpack_from,
        "text": _text,
        "enc": _encode,
        "struct_error": struct.error,
    }
    body = [  # reads a row at `at` into f0, f1...: each column's attribute value as JSON
        f"if data[at] != {count >> 8} or data[at + 1] != {count & 0xFF}:",
        "    return None",
        "at += 2",
    ]
    for i, convert in enumerate(table.converters):
        fragment = _FRAGMENTS.get(convert)
        if fragment is None:
            scope[f"c{i}"] = convert
            fragment = f"enc(c{i}({{v}}.decode()))"
        value = fragment.format(v=f"v{i}")
        body += [
            "kind = data[at]",
            "if kind == 116:",
            "    n = u32(data, at + 1)[0]",
            "    at += 5",
            f"    v{i} = data[at:at + n]",
            "    at += n",
            f"    f{i} = {value}",
            "elif kind == 110:",
            "    at += 1",
            f"    f{i} = b'{{\"NULL\":true}}'",
            "else:",
            "    return None",
        ]
    fragments = ", ".join(f"f{i}" for i in range(count))
    lines = ["def row(data, at):", *(f"    {line}" for line in body)]
    lines += [f"    return ({fragments}{',' if count == 1 else ''}), at"]

    def layout(columns: Sequence[int], value: str = "r[{}]") -> str:
        entries = [
            f"{_lit((b'{' if n == 0 else b',') + _encode(names[i]) + b':')} + {value.format(i)}"
            for n, i in enumerate(columns)
        ]
        return " + ".join(entries) + " + b'}'" if entries else "b'{}'"

    lines += [
        "def image(r):",
        f"    return {layout(range(count))}",
        "def keys(r):",
        f"    return {layout(table.keys)}",
    ]
    scope["heads"] = {
        ord(kind): _encode(
            {"eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": region}
        )[1:-1]
        for kind, name in EVENT_NAMES.items()
    }
    tail = _encode({"StreamViewType": view})[1:-1] + b"}," + _encode({"eventSourceARN": table.arn})[1:]
    new_image = f"{layout(range(count), 'f{}')}, " if view in NEW_VIEWS else ""
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
        "def encode(data, sequence, created, size):",
        "    try:",
        "        op = data[0]",
        "        if data[5] == 78 and (op == 73 or op == 85):",  # an Insert, an Update without the old row
        "            at = 6",
        *(f"            {line}" for line in body),
        "            if at > len(data):",
        "                return None",
        f"            key = {layout(table.keys, 'f{}')}",
        f"            return NEW[op] % (sequence, created, key, {new_image}sequence, size), key",
        "        found = parse(data)",
        "    except (IndexError, struct_error, UnicodeDecodeError):",  # cut short, not UTF-8: the long way says
        "        return None",
        "    if found is None:",
        "        return None",
        "    kind, new, old, full = found",
        "    head = heads[kind]",
        "    key = keys(new if new is not None else old)",
        "    parts = [OPEN, b'%032x\",' % sequence, head, DYNAMODB, created, KEYS, key]",
    ]
    if view in NEW_VIEWS:
        lines += ["    if new is not None:", "        parts += (NEW_IMAGE, image(new))"]
    if view in OLD_VIEWS:
        lines += ["    if full:", "        parts += (OLD_IMAGE, image(old))"]
    lines += [
        "    parts.append(SEQUENCE % (sequence, size))",
        "    return b''.join(parts), key",
    ]
    opening = {
        kind: (b'{"eventID":"%032x",' + head.replace(b"%", b"%%") + b',"dynamodb":{"ApproximateCreationDateTime":%s')
        for kind, head in scope["heads"].items()
    }
    ending = b',"SequenceNumber":"%d","SizeBytes":%d,' + tail.replace(b"%", b"%%")
    scope["NEW"] = {  # the record of a change with only a new row, to fill with % in one go
        kind: opening[kind] + b',"Keys":%s' + (b',"NewImage":%s' if view in NEW_VIEWS else b"") + ending
        for kind in (73, 85)
    }
    scope.update(
        OPEN=b'{"eventID":"',
        DYNAMODB=b',"dynamodb":{"ApproximateCreationDateTime":',
        KEYS=b',"Keys":',
        NEW_IMAGE=b',"NewImage":',
        OLD_IMAGE=b',"OldImage":',
        SEQUENCE=b',"SequenceNumber":"%d","SizeBytes":%d,' + tail.replace(b"%", b"%%"),
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
