"""A decoder of `pgoutput`'s binary messages, logical replication protocol version 1 (PostgreSQL 10 and later):
Begin, Commit, Origin, Relation, Type, Insert, Update, Delete and Truncate, as the PostgreSQL documentation's
"Logical Replication Message Formats" describes them. Pure functions of bytes: no connection, no I/O.

Column values come as PostgreSQL's text output (`t`), SQL NULL (`n`) or "unchanged TOASTed value" (`u`: an update
that did not touch a large value does not send it again); version 1 never sends the binary form.

The messages are frozen msgspec Structs: one is made for every message of the stream, and a Struct is built in C
(a tenth of the cost of a frozen dataclass, which sets each field through `object.__setattr__`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Literal

import msgspec

POSTGRES_EPOCH = 946684800.0
"""2000-01-01T00:00:00Z as Unix time: pgoutput's timestamps are microseconds since then."""

UNCHANGED = object()
"""The value of a column an update left as it was (a TOASTed value PostgreSQL did not send again)."""


class NotUtf8(bytes):
    """A text value that is not UTF-8 (a SQL_ASCII database stores whatever bytes a client sends): its bytes, which
    the record carries as a binary value (`B`) rather than text."""


Value = str | None | object
"""A column's text, None for SQL NULL, or UNCHANGED."""

_I8 = struct.Struct("!b")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!bQQq")
_COLUMN_TAIL = struct.Struct("!Ii")


class ProtocolError(ValueError):
    """A message this decoder cannot read (cut short, or of an unknown kind where one is required)."""


class Begin(msgspec.Struct, frozen=True, gc=False):
    """pgoutput's Begin message: a transaction starts."""

    final_lsn: int
    """The LSN of the transaction's commit record: the same for every change of the transaction."""
    commit_time: float
    """Epoch seconds."""
    xid: int


class Commit(msgspec.Struct, frozen=True, gc=False):
    """pgoutput's Commit message: a transaction ends."""

    commit_lsn: int
    end_lsn: int
    """The end of the commit record: what the slot is confirmed up to once the transaction is settled."""
    commit_time: float


class Column(msgspec.Struct, frozen=True, gc=False):
    """A column of a Relation message."""

    name: str
    type_oid: int
    key: bool
    """Part of the replica identity (every column, for REPLICA IDENTITY FULL)."""


class Relation(msgspec.Struct, frozen=True, gc=False):
    """pgoutput's Relation message: a table's name, replica identity and columns, sent before its first change."""

    oid: int
    schema: str
    name: str
    identity: str
    """REPLICA IDENTITY: `d` default (the primary key), `n` nothing, `f` full, `i` an index."""
    columns: tuple[Column, ...]


class TypeInfo(msgspec.Struct, frozen=True, gc=False):
    """pgoutput's Type message: a type's name, for a type that is not built in."""

    oid: int
    schema: str
    name: str


class Change(msgspec.Struct, frozen=True, gc=False):
    """An Insert, Update or Delete. `old` is the key columns (`K`) or the whole old row (`O`, REPLICA IDENTITY
    FULL) when the message carries it; `new` is the new row (None for a delete)."""

    kind: Literal["I", "U", "D"]
    relation: int
    new: tuple[Value, ...] | None
    old: tuple[Value, ...] | None
    old_kind: Literal["K", "O"] | None
    not_utf8: bool = False
    """A value is NotUtf8 (rare: such a change is laid out column by column)."""


class Truncate(msgspec.Struct, frozen=True, gc=False):
    """pgoutput's Truncate message: the tables emptied (no record is made of it)."""

    relations: tuple[int, ...]


class Other(msgspec.Struct, frozen=True, gc=False):
    """A message this source has no use for (Origin, a logical decoding message)."""

    kind: str


Message = Begin | Commit | Relation | TypeInfo | Change | Truncate | Other


def timestamp(micros: int) -> float:
    """A PostgreSQL timestamp (microseconds since 2000-01-01) as epoch seconds."""
    return POSTGRES_EPOCH + micros / 1_000_000


def decode(data: bytes) -> Message:
    """One pgoutput message. Raises ProtocolError for a message cut short or an unknown tuple kind."""
    try:
        try:
            return _decode(data)
        except UnicodeDecodeError:
            if data[:1] not in (b"I", b"U", b"D"):
                raise
            return _change(data, lenient=True)  # a text value that is not UTF-8: its bytes
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"a pgoutput message of kind {data[:1]!r} could not be read: {exc}") from exc


def _decode(data: bytes) -> Message:
    kind = data[:1]
    if kind in (b"I", b"U", b"D"):
        return _change(data)
    if kind == b"B":
        final_lsn, micros, xid = _BEGIN.unpack_from(data, 1)
        return Begin(final_lsn, timestamp(micros), xid)
    if kind == b"C":
        _flags, commit_lsn, end_lsn, micros = _COMMIT.unpack_from(data, 1)
        return Commit(commit_lsn, end_lsn, timestamp(micros))
    if kind == b"R":
        return _relation(data)
    if kind == b"Y":
        (oid,) = _U32.unpack_from(data, 1)
        schema, at = _string(data, 5)
        name, _ = _string(data, at)
        return TypeInfo(oid, schema, name)
    if kind == b"T":
        (count,) = _I32.unpack_from(data, 1)
        return Truncate(struct.unpack_from(f"!{count}I", data, 6))
    return Other(kind.decode("ascii", "replace"))


def _string(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(0, at)
    return data[at:end].decode(), end + 1


def _relation(data: bytes) -> Relation:
    (oid,) = _U32.unpack_from(data, 1)
    schema, at = _string(data, 5)
    name, at = _string(data, at)
    identity = chr(data[at])
    (count,) = _I16.unpack_from(data, at + 1)
    at += 3
    columns = []
    for _ in range(count):
        flags = data[at]
        column, at = _string(data, at + 1)
        type_oid, _typmod = _COLUMN_TAIL.unpack_from(data, at)
        at += 8
        columns.append(Column(column, type_oid, bool(flags & 1)))
    return Relation(oid, schema or "pg_catalog", name, identity, tuple(columns))


def _change(data: bytes, lenient: bool = False) -> Change:
    kind = chr(data[0])
    (relation,) = _U32.unpack_from(data, 1)
    at = 5
    old: tuple[Value, ...] | None = None
    old_kind: Literal["K", "O"] | None = None
    text = _text_or_bytes if lenient else _utf8
    marker = data[at : at + 1]
    if marker in (b"K", b"O"):
        old_kind = "K" if marker == b"K" else "O"
        old, at = _tuple(data, at + 1, text)
        marker = data[at : at + 1]
    new: tuple[Value, ...] | None = None
    if marker == b"N":
        new, at = _tuple(data, at + 1, text)
    elif kind != "D":
        raise ProtocolError(f"a pgoutput {kind} message without its new row")
    return Change(kind, relation, new, old, old_kind, lenient)  # type: ignore[arg-type]


_utf8 = bytes.decode


def _text_or_bytes(raw: bytes) -> str | NotUtf8:
    """A text value's text, or its bytes (NotUtf8) when it is not UTF-8 (the lenient read of a change)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return NotUtf8(raw)


def _tuple(data: bytes, at: int, text: Callable[[bytes], Value] = _utf8) -> tuple[tuple[Value, ...], int]:
    (count,) = _I16.unpack_from(data, at)
    at += 2
    values: list[Value] = []
    append = values.append
    for _ in range(count):
        kind = data[at]
        at += 1
        if kind == 0x74:  # 't': text
            (length,) = _I32.unpack_from(data, at)
            at += 4
            if at + length > len(data):
                raise IndexError(f"a value of {length} bytes where {len(data) - at} are left")
            append(text(data[at : at + length]))
            at += length
        elif kind == 0x6E:  # 'n': NULL
            append(None)
        elif kind == 0x75:  # 'u': an unchanged TOASTed value
            append(UNCHANGED)
        else:
            raise ProtocolError(f"unknown column kind {chr(kind)!r} (binary values need protocol options not used)")
    return tuple(values), at
