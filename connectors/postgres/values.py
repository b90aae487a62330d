"""Column values as DynamoDB attribute values: PostgreSQL's text output of a column, by its type, becomes the typed
JSON a DynamoDB stream record carries.

| PostgreSQL                                          | attribute value                                     |
| --------------------------------------------------- | --------------------------------------------------- |
| NULL                                                | `{"NULL": true}`                                    |
| boolean                                             | `{"BOOL": true}`                                    |
| smallint, integer, bigint, oid, numeric, real,      | `{"N": "<the text>"}` (`NaN` and infinities, which  |
| double precision                                    | DynamoDB numbers cannot be, as `{"S": ...}`)        |
| bytea                                               | `{"B": "<base64>"}`                                 |
| json, jsonb                                         | the JSON as attribute values: objects `M`, arrays   |
|                                                     | `L`, strings `S`, numbers `N` (their exact text),   |
|                                                     | true/false `BOOL`, null `NULL`                      |
| arrays of any of these (any dimension)              | `{"L": [...]}` of the elements' values              |
| anything else (text, uuid, timestamps, enums, ...)  | `{"S": "<PostgreSQL's text output>"}`               |

A domain is converted as its base type. Types the hub does not know by OID (enums, domains, arrays of user types)
are looked up once in `pg_type` (`Types.learn`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

Kind = str
"""How a type's text becomes an attribute value: `S`, `N` (checked to be a number), `INT` (always one), `FLOAT`
(a number, or NaN and the infinities), `BOOL`, `B`, `JSON`, or `L:<element kind>`."""

BUILTIN: dict[int, Kind] = {
    16: "BOOL",
    17: "B",
    20: "INT",
    21: "INT",
    23: "INT",
    26: "INT",
    700: "FLOAT",
    701: "FLOAT",
    1700: "FLOAT",
    790: "S",  # money: category N, but its text ("$1.00") is no number
    114: "JSON",
    3802: "JSON",
    # arrays of the above, and of text-like types
    1000: "L:BOOL",
    1001: "L:B",
    1005: "L:INT",
    1007: "L:INT",
    1016: "L:INT",
    1021: "L:FLOAT",
    1022: "L:FLOAT",
    1028: "L:INT",
    1231: "L:FLOAT",
    199: "L:JSON",
    3807: "L:JSON",
    1009: "L:S",  # text[]
    1015: "L:S",  # varchar[]
    1014: "L:S",  # char[]
    2951: "L:S",  # uuid[]
    1115: "L:S",  # timestamp[]
    1185: "L:S",  # timestamptz[]
    1182: "L:S",  # date[]
}
TYPE_QUERY = (
    "SELECT t.oid, t.typcategory::text, t.typelem, t.typbasetype, e.typcategory::text AS elemcategory "
    "FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = ANY($1::oid[])"
)
"""What `Types.learn` needs of types it does not know: rows of (oid, typcategory, typelem, typbasetype, the
element's category)."""

_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class Types:
    """The conversion of each type OID seen in the stream; unknown ones are learned from `pg_type`."""

    def __init__(self) -> None:
        self.kinds: dict[int, Kind] = dict(BUILTIN)

    def missing(self, oids: Iterable[int]) -> list[int]:
        """Those of these type oids not known yet."""
        return sorted({oid for oid in oids if oid not in self.kinds})

    def learn(self, rows: Iterable[tuple[int, str, int, int, str | None]]) -> None:
        """Record the kinds of types from TYPE_QUERY rows (a domain over a known type takes its base's kind)."""
        for oid, category, element, base, element_category in rows:
            if base and base in self.kinds:
                self.kinds[oid] = self.kinds[base]
            elif category == "A" and element:
                self.kinds[oid] = "L:" + self.kinds.get(element, _by_category(element_category))
            else:
                self.kinds[oid] = _by_category(category)

    def converter(self, oid: int) -> Callable[[str], dict[str, Any]]:
        """What turns a value of this type (in text form) into a DynamoDB attribute value (`S` for an unknown type)."""
        kind = self.kinds.get(oid, "S")
        return CONVERTERS.get(kind) or _array_converter(kind)


def _by_category(category: str | None) -> Kind:
    # category N also holds money, whose text ("$1.00") is no number: checked at conversion (`number`)
    return {"B": "BOOL", "N": "N"}.get(category or "", "S")


def string(text: str) -> dict[str, Any]:
    """`{"S": text}`."""
    return {"S": text}


def number(text: str) -> dict[str, Any]:
    """`{"N": text}` for a number as DynamoDB writes one, else `{"S": text}`."""
    return {"N": text} if _NUMBER.match(text) else {"S": text}


def integer(text: str) -> dict[str, Any]:
    """`{"N": text}`."""
    return {"N": text}


def floating(text: str) -> dict[str, Any]:
    """`{"N": text}`, or `{"S": text}` for NaN and the infinities, which DynamoDB numbers cannot hold."""
    # PostgreSQL writes a float or numeric as digits, a sign, `.`, `e`, or as NaN, Infinity, -Infinity
    return {"S": text} if text[-1] in "Ny" else {"N": text}


def boolean(text: str) -> dict[str, Any]:
    """`{"BOOL": ...}` of PostgreSQL's `t`/`f`."""
    return {"BOOL": text in ("t", "true")}


def binary(text: str) -> dict[str, Any]:
    """`{"B": base64}` of a bytea in hex or escape form."""
    if text.startswith("\\x"):
        return {"B": base64.b64encode(bytes.fromhex(text[2:])).decode("ascii")}
    return {"B": base64.b64encode(_unescape_bytea(text)).decode("ascii")}  # bytea_output = 'escape'


def json_value(text: str) -> dict[str, Any]:
    """A json/jsonb value as the DynamoDB attribute value of what it holds (a map, a list, a number...); one nested
    deeper than Python reads is its text (`{"S": ...}`), never a failed change."""
    try:
        return attribute(json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=str))
    except RecursionError:
        return {"S": text}


CONVERTERS: dict[Kind, Callable[[str], dict[str, Any]]] = {
    "S": string,
    "N": number,
    "INT": integer,
    "FLOAT": floating,
    "BOOL": boolean,
    "B": binary,
    "JSON": json_value,
}


class _Number(str):
    """A JSON number kept as its exact text."""


def attribute(value: Any) -> dict[str, Any]:
    """A JSON value (numbers as _Number) as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, _Number):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [attribute(item) for item in value]}
    if isinstance(value, dict):
        return {"M": {str(k): attribute(v) for k, v in value.items()}}
    return {"S": str(value)}


def _array_converter(kind: Kind) -> Callable[[str], dict[str, Any]]:
    element = CONVERTERS.get(kind.removeprefix("L:"), string)

    def convert(text: str) -> dict[str, Any]:
        return _list(parse_array(text), element)

    return convert


def _list(items: list[Any], element: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for item in items:
        if item is None:
            out.append({"NULL": True})
        elif isinstance(item, list):
            out.append(_list(item, element))
        else:
            out.append(element(item))
    return {"L": out}


def parse_array(text: str) -> list[Any]:
    """PostgreSQL's text output of an array (`{1,2,NULL}`, `{{"a b",c},{d,e}}`, `[0:1]={x,y}`) as nested lists of
    element texts, None for NULL."""
    if text.startswith("["):  # explicit bounds: `[1:2]={...}`
        text = text[text.index("=") + 1 :]
    value, at = _array(text, 0)
    if at != len(text):
        raise ValueError(f"not an array: {text[:40]!r}")
    return value


def _array(text: str, at: int) -> tuple[list[Any], int]:
    if text[at] != "{":
        raise ValueError(f"not an array: {text[:40]!r}")
    at += 1
    out: list[Any] = []
    if text[at] == "}":
        return out, at + 1
    while True:
        char = text[at]
        if char == "{":
            item, at = _array(text, at)
            out.append(item)
        elif char == '"':
            chars = []
            at += 1
            while text[at] != '"':
                if text[at] == "\\":
                    at += 1
                chars.append(text[at])
                at += 1
            out.append("".join(chars))
            at += 1
        else:
            end = at
            while text[end] not in ",}":
                end += 1
            word = text[at:end]
            out.append(None if word == "NULL" else word)
            at = end
        if text[at] == "}":
            return out, at + 1
        at += 1  # the delimiter


def _unescape_bytea(text: str) -> bytes:
    out = bytearray()
    i = 0
    raw = text.encode("latin-1", "replace")
    while i < len(raw):
        if raw[i] == 0x5C and raw[i + 1 : i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        elif raw[i] == 0x5C:
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)
