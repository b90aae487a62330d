"""Limits, the pattern error and the value helpers shared by the pattern compiler and the matcher."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final, NoReturn

# ---- limits (those of AWS / event-ruler) -------------------------------------------------------------------

_NUMERIC_LIMIT: Final = 5_000_000_000  # numeric matching works on [-5e9, 5e9] ...
_MAX_DECIMALS: Final = 6  # ... with six digits after the decimal point
_MAX_FIELDS: Final = 256  # event-ruler: "Size of rule exceeds max value of 256"
_MAX_PATTERN_LENGTH: Final = 4096  # Lambda FilterCriteria: a pattern is at most 4096 characters
_WILDCARD_COMPLEXITY_LIMIT: Final = 10  # "Rule is too complex" (see _wildcard_complexity)
_MAX_ALTERNATIVES: Final = 1024  # our own guard on the $or expansion (not an AWS number)

_OR: Final = "$or"
_NUMERIC_OPERATORS: Final = ("=", "<", "<=", ">", ">=")
# Field names event-ruler refuses inside `$or` (its Constants.RESERVED_FIELD_NAMES_IN_OR_RELATIONSHIP).
_RESERVED_IN_OR: Final = frozenset(
    {
        "exactly", "equals-ignore-case", "prefix", "suffix", "anything-but", "exists", "wildcard", "numeric",
        "cidr", "html", "=", "<", "<=", ">", ">=", "regex", "not-wildcard", "not-equals-ignore-case",
        "date-after", "date-on-or-after", "date-before", "date-on-or-before", "in-date-range",
        "ip-address-in-range", "ip-address-not-in-range",
    }
)  # fmt: skip

_Test = Callable[[Any], bool]
_StrTest = Callable[[str], bool]
_PathParts = tuple[str | int, ...]


class PatternError(ValueError):
    """An invalid pattern. str() says where in the pattern (a JSON path like `detail.price[0].numeric`) and
    what is wrong; `path` and `reason` hold the two parts, `index` the filter's position in a FilterSet, and
    `parts` the keys and indexes of `path` where they are known (empty otherwise), for a caller that locates the
    offending value in its own source (the configuration's line and column)."""

    def __init__(
        self, reason: str, path: str = "", *, index: int | None = None, parts: tuple[str | int, ...] = ()
    ) -> None:
        self.reason = reason
        self.path = path
        self.index = index
        self.parts = parts
        text = f"{path}: {reason}" if path else reason
        if index is not None:
            text = f"filter {index}: {text}"
        super().__init__(text)


def _format_path(parts: _PathParts) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(root)"


def _fail(parts: _PathParts, reason: str) -> NoReturn:
    raise PatternError(reason, _format_path(parts), parts=parts)


# ---- value helpers -----------------------------------------------------------------------------------------


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()


class _Fallback(Exception):
    """Raised by the compiled closures when only the literal matcher can decide (see the package docstring)."""


class _Pairs(list[tuple[str, Any]]):
    """A JSON object read from text, its members in order, duplicates kept."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_object(value: Any) -> bool:
    return isinstance(value, (Mapping, _Pairs))


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and not isinstance(value, _Pairs)


def _items(value: Any) -> Iterable[tuple[Any, Any]]:
    """The members of a pattern object: a Mapping, or the (key, value) pairs of a JSON object read from text
    (duplicate keys are kept, so each one is validated, as AWS's streaming parser does)."""
    if isinstance(value, _Pairs):
        return list(value)
    items: Iterable[tuple[Any, Any]] = value.items()
    return items


def _numeric_value(value: Any, parts: _PathParts, what: str) -> int | float:
    """A number usable by `numeric` and `anything-but`: finite, in [-5e9, 5e9], at most six decimals."""
    if not _is_number(value) or (isinstance(value, float) and math.isnan(value)):
        _fail(parts, f"{what} must be a number")
    number: int | float = value
    if not -_NUMERIC_LIMIT <= number <= _NUMERIC_LIMIT:
        _fail(parts, f"{value!r} is out of range: numbers must be between -5.0E9 and 5.0E9, inclusive")
    if isinstance(number, float):
        exponent = Decimal(repr(number)).normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
            _fail(parts, f"{value!r} has too many decimals: at most {_MAX_DECIMALS} digits after the point")
    return number


def _number_key(value: int | float) -> Any:
    """How an exact number is compared: by value inside the numeric range (300 == 300.0 == 3.0e2), outside it
    (where AWS compares the JSON text) by value and by int/float kind."""
    if -_NUMERIC_LIMIT <= value <= _NUMERIC_LIMIT:
        return value
    return (value.__class__ is int, value)


# IP addresses, as event-ruler recognises them (CIDR.java): only text of these shapes is taken for an address.
_IPV4_SHAPE: Final = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
_IPV6_SHAPE: Final = re.compile(r"[0-9a-fA-F:]*:[0-9a-fA-F:]*")


def _ip_shape(text: str) -> bool:
    return _IPV4_SHAPE.fullmatch(text) is not None or _IPV6_SHAPE.fullmatch(text) is not None


def _parse_ip(text: str) -> tuple[int, int] | None:
    """(4 or 6, address as an integer), or None. IPv4-mapped IPv6 addresses are IPv4, as in Java."""
    try:
        if _IPV4_SHAPE.fullmatch(text) is not None:
            return 4, int(ipaddress.IPv4Address(text))
        if _IPV6_SHAPE.fullmatch(text) is not None:
            address = ipaddress.IPv6Address(text)
            mapped = address.ipv4_mapped
            return (4, int(mapped)) if mapped is not None else (6, int(address))
    except ValueError:
        return None
    return None


_MASK_BITS: Final = re.compile(r"[+-]?[0-9]+")


def _parse_cidr(text: str, parts: _PathParts) -> tuple[int, int, int]:
    """(version, first, last) of a CIDR block. As in event-ruler, the block starts at the address as written
    (host bits are not cleared) and the mask is at most /31 (IPv4) or /127 (IPv6)."""
    pieces = text.split("/")
    while pieces and pieces[-1] == "":  # Java's String.split drops trailing empty strings
        pieces.pop()
    if len(pieces) != 2:
        _fail(parts, f"malformed CIDR {text!r}: exactly one '/' is required")
    address, mask_text = pieces
    if _MASK_BITS.fullmatch(mask_text) is None or not -(2**31) <= int(mask_text) < 2**31:
        _fail(parts, f"malformed CIDR {text!r}: the mask bits must be an integer")
    mask = int(mask_text)
    if mask < 0:
        _fail(parts, f"malformed CIDR {text!r}: the mask bits must not be negative")
    if not _ip_shape(address):
        _fail(parts, f"malformed CIDR {text!r}: {address!r} is not an IP address")
    ip = _parse_ip(address)
    if ip is None:
        _fail(parts, f"malformed CIDR {text!r}: invalid IP address {address!r}")
    version, value = ip
    bits = 32 if version == 4 else 128
    if mask > bits - 1:
        _fail(parts, f"malformed CIDR {text!r}: IPv{version} mask bits must be < {bits}")
    return version, value, value | ((1 << (bits - mask)) - 1)
