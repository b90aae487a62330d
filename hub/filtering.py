"""EventBridge event patterns: the filter language of `filter_criteria`, matched as AWS matches it.

A pattern is compiled once (`compile_pattern`, `FilterSet.compile`) into small closures; `matches` then only
walks the event. The semantics are those of AWS's matching engine, `aws/event-ruler` (which EventBridge and
Lambda event filtering run), checked by the cases recorded against AWS in tests/conformance/event-patterns:

- A pattern is flattened into field paths joined by "." (`{"a": {"b": [1]}}` is the path `a.b`), and so is
  the event: `{"a.b": [1]}` matches `{"a": {"b": 1}}`, and `{"a": {"b": [1]}}` matches `{"a.b": 1}`. `$or`
  expands the pattern into alternatives, each a complete set of paths; a path written twice keeps the last
  value written (as event-ruler does).
- A path matches when one of the event's values at that path matches one of the pattern's values. Arrays in
  the event are crushed: each element is a value of the same path; an array of objects matches when one
  element (the same one for every path below the array) matches: event-ruler's array consistency.
- Only leaves count: an object or an empty array is not a value, so `exists: true` does not match it and
  `exists: false` does.
- Types are strict: strings match only string operators, numbers only numbers (300 equals 300.0 and 3.0e2),
  true/false/null only themselves. `anything-but` matches any present value, of any type, that it does not
  exclude, null included.
- `numeric` works on JSON numbers in [-5e9, 5e9], with at most six decimals in the pattern, as AWS documents.

Where an `exists: false` sits below an array of objects in the event (or the event spells a path with dotted
keys), the closures hand over to a literal re-implementation of event-ruler's matcher (`_slow_match`), which
also reproduces the order in which event-ruler checks such conditions.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, NoReturn

__all__ = ["FilterSet", "Pattern", "PatternError", "compile_pattern"]

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
    what is wrong; `path` and `reason` hold the two parts, `index` the filter's position in a FilterSet."""

    def __init__(self, reason: str, path: str = "", *, index: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.index = index
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
    raise PatternError(reason, _format_path(parts))


# ---- value helpers -----------------------------------------------------------------------------------------


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()


class _Fallback(Exception):
    """Raised by the compiled closures when only the literal matcher can decide (see module docstring)."""


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


# ---- string operators --------------------------------------------------------------------------------------


def _case_alternatives(char: str) -> list[str]:
    """What one pattern character matches under equals-ignore-case: its lower and upper case (Java's
    String.toLowerCase/toUpperCase(Locale.ROOT) of that one UTF-16 unit; characters outside the BMP match only
    themselves). The event's characters are not folded."""
    if ord(char) > 0xFFFF:
        return [char]
    lower, upper = char.lower(), char.upper()
    return [lower] if lower == upper else [lower, upper]


class _IgnoreCase:
    """equals-ignore-case of one pattern string, as whole value, prefix or suffix."""

    __slots__ = ("_folded", "_length", "_regex", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._length = len(text)
        self._folded = text.lower() if text.isascii() else None
        self._regex: re.Pattern[str] | None = None
        if self._folded is None:
            pieces = []
            for char in text:
                alternatives = sorted(_case_alternatives(char), key=len, reverse=True)
                pieces.append("(?:" + "|".join(re.escape(a) for a in alternatives) + ")")
            self._regex = re.compile("".join(pieces), re.DOTALL)

    def equals(self, value: str) -> bool:
        if self._folded is not None:
            return len(value) == self._length and value.isascii() and value.lower() == self._folded
        assert self._regex is not None
        return self._regex.fullmatch(value) is not None

    def prefix(self, value: str) -> bool:
        if self._folded is not None:
            head = value[: self._length]
            return len(head) == self._length and head.isascii() and head.lower() == self._folded
        assert self._regex is not None
        return self._regex.match(value) is not None

    def suffix(self, value: str) -> bool:
        if self._folded is not None:
            if not self._length:
                return True
            tail = value[-self._length :]
            return len(tail) == self._length and tail.isascii() and tail.lower() == self._folded
        assert self._regex is not None
        return any(self._regex.fullmatch(value, start) is not None for start in range(len(value) + 1))


def _ignore_case_set(texts: Iterable[str], how: str) -> _StrTest:
    """One test for several equals-ignore-case strings (how: equals, prefix or suffix)."""
    matchers = [_IgnoreCase(text) for text in texts]
    if how == "equals" and matchers and all(m.text.isascii() for m in matchers):
        folded = frozenset(m.text.lower() for m in matchers)
        return lambda value: value.isascii() and value.lower() in folded
    tests: list[_StrTest] = [getattr(m, how) for m in matchers]
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


_STAR: Final = -1  # a wildcard in the token form of a wildcard pattern (literal bytes are 0..255)


def _parse_wildcard(text: str, parts: _PathParts) -> list[str]:
    """The literal pieces between the `*` of a wildcard pattern. `\\*` is a literal star, `\\\\` a backslash;
    any other backslash, and two wildcards in a row, are rejected (event-ruler's WildcardParser)."""
    pieces: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "*":
            if text[i + 1 : i + 2] == "*":
                _fail(parts, f"consecutive wildcard characters at position {i} of {text!r} are not allowed")
            pieces.append("".join(current))
            current = []
        elif char == "\\":
            following = text[i + 1 : i + 2]
            if following not in ("*", "\\"):
                _fail(parts, f"invalid escape at position {i} of {text!r}: '\\' may only escape '*' or '\\'")
            current.append(following)
            i += 1
        else:
            current.append(char)
        i += 1
    pieces.append("".join(current))
    return pieces


def _wildcard_tokens(pieces: list[str]) -> list[int]:
    """The byte/star tokens event-ruler's machine holds for a wildcard pattern (the JSON quotes included)."""
    tokens = [0x22]
    for n, piece in enumerate(pieces):
        if n:
            tokens.append(_STAR)
        tokens.extend(piece.encode("utf-8"))
    tokens.append(0x22)
    return tokens


def _wildcard_test(pieces: list[str]) -> _StrTest:
    if len(pieces) == 1:
        exact = pieces[0]
        return lambda value: value == exact
    first, last, middle = pieces[0], pieces[-1], tuple(p for p in pieces[1:-1] if p)
    least = sum(len(p) for p in pieces)
    cut = len(last)

    def test(value: str) -> bool:
        if len(value) < least or not value.startswith(first) or not value.endswith(last):
            return False
        position, end = len(first), len(value) - cut
        for piece in middle:  # leftmost-first is exact for `*`-only patterns
            found = value.find(piece, position, end)
            if found < 0:
                return False
            position = found + len(piece)
        return True

    return test


def _wildcard_complexity(patterns: Sequence[Sequence[Sequence[int]]], limit: int) -> int:
    """event-ruler's MachineComplexityEvaluator, for the wildcard patterns on one field: the largest number of
    (pattern, prefix) pairs that one input can leave active at once. `*a*a*a*` scores 7 on "aaa".

    patterns: per pattern (a wildcard, or one anything-but wildcard set), the token lists of its values.
    Returns a value >= limit as soon as the limit is reached."""
    children: list[dict[int, int]] = [{}]
    owners: list[set[int]] = [set()]
    star_child: list[int] = [-1]
    is_star: list[bool] = [False]
    for owner, values in enumerate(patterns):
        for tokens in values:
            node = 0
            for token in tokens:
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = len(children)
                    children.append({})
                    owners.append(set())
                    star_child.append(-1)
                    is_star.append(token == _STAR)
                    children[node][token] = nxt
                    if token == _STAR:
                        star_child[node] = nxt
                node = nxt
                owners[node].add(owner)
    weight = [len(o) for o in owners]

    def closure(nodes: set[int]) -> frozenset[int]:
        stack = list(nodes)
        while stack:
            star = star_child[stack.pop()]
            if star >= 0 and star not in nodes:
                nodes.add(star)
                stack.append(star)
        return frozenset(nodes)

    alphabet = sorted({t for c in children for t in c if t != _STAR} | {256})  # 256: any other byte
    start = closure({0})
    seen = {start}
    queue = [start]
    best = 0
    while queue:
        current = queue.pop()
        for byte in alphabet:
            reached = {x for x in current if is_star[x]}
            for x in current:
                child = children[x].get(byte)
                if child is not None:
                    reached.add(child)
            if not reached:
                continue
            state = closure(reached)
            best = max(best, sum(weight[x] for x in state))
            if best >= limit:
                return best
            if state not in seen:
                if len(seen) > 20_000:
                    return limit
                seen.add(state)
                queue.append(state)
    return best


# ---- compiling one leaf (the array of values of one path) --------------------------------------------------


class _LeafSpec:
    """What the values of one pattern path ask for, gathered before the test closure is built."""

    def __init__(self) -> None:
        self.strings: set[str] = set()
        self.numbers: set[Any] = set()
        self.constants: set[Any] = set()  # True / False / None
        self.prefixes: list[str] = []
        self.suffixes: list[str] = []
        self.ignore_case: dict[str, list[str]] = {"equals": [], "prefix": [], "suffix": []}
        self.string_tests: list[_StrTest] = []  # wildcards
        self.ip_ranges: list[tuple[int, int, int]] = []
        self.number_tests: list[_Test] = []  # numeric
        self.any_tests: list[_Test] = []  # anything-but
        self.exists = False
        self.absent_ok = False
        self.wildcards: dict[Any, list[list[int]]] = {}  # for the complexity check


class _Leaf:
    __slots__ = ("absent_ok", "test", "wildcards")

    def __init__(self, test: _Test, absent_ok: bool, wildcards: dict[Any, list[list[int]]]) -> None:
        self.test = test
        self.absent_ok = absent_ok
        self.wildcards = wildcards


def _compile_leaf(values: Any, parts: _PathParts) -> _Leaf:
    spec = _LeafSpec()
    if not values:
        _fail(parts, "empty arrays are not allowed: give at least one value")
    for i, value in enumerate(values):
        here = (*parts, i)
        if value is None or value is True or value is False:
            spec.constants.add(value)
        elif isinstance(value, str):
            ip = _parse_ip(value)  # a string that is an IP address matches that address however it is written
            if ip is not None:
                spec.ip_ranges.append((ip[0], ip[1], ip[1]))
            else:
                spec.strings.add(value)
        elif _is_number(value):
            if isinstance(value, float) and math.isnan(value):
                _fail(here, "NaN is not a JSON number")
            spec.numbers.add(_number_key(value))
        elif _is_object(value):
            _compile_operator(value, here, spec)
        else:
            _fail(
                here,
                f"a value must be a string, number, true, false, null or an operator object, not {value!r}",
            )
    return _Leaf(_build_test(spec), spec.absent_ok, spec.wildcards)


def _single_member(value: Any, parts: _PathParts, what: str) -> tuple[str, Any, int]:
    members = list(_items(value))
    if not members:
        _fail(parts, f"empty {what}")
    name, argument = members[0]
    if not isinstance(name, str):
        _fail(parts, f"{what}: {name!r} is not a string")
    return name, argument, len(members)


def _one_key(count: int, parts: _PathParts) -> None:
    if count > 1:
        _fail(parts, "only one key is allowed in a match expression")


def _string_argument(argument: Any, parts: _PathParts, operator: str) -> str:
    if not isinstance(argument, str):
        _fail(parts, f"{operator} match pattern must be a string")
    return argument


def _compile_operator(expression: Any, parts: _PathParts, spec: _LeafSpec) -> None:
    operator, argument, count = _single_member(expression, parts, "match expression: expected an operator")
    here = (*parts, operator)
    if operator == "exactly":
        spec.strings.add(_string_argument(argument, here, operator))
    elif operator == "equals-ignore-case":
        spec.ignore_case["equals"].append(_string_argument(argument, here, operator))
    elif operator in ("prefix", "suffix"):
        if _is_object(argument):
            inner, text, inner_count = _single_member(argument, here, f"{operator} expression")
            if inner != "equals-ignore-case":
                _fail((*here, inner), f"unsupported {operator} pattern {inner!r}: only equals-ignore-case")
            spec.ignore_case[operator].append(_string_argument(text, (*here, inner), "equals-ignore-case"))
            _one_key(inner_count, here)
        elif operator == "prefix":
            spec.prefixes.append(_string_argument(argument, here, operator))
        else:
            spec.suffixes.append(_string_argument(argument, here, operator))
    elif operator == "wildcard":
        pieces = _parse_wildcard(_string_argument(argument, here, operator), here)
        spec.string_tests.append(_wildcard_test(pieces))
        spec.wildcards[("wildcard", tuple(pieces))] = [_wildcard_tokens(pieces)]
    elif operator == "numeric":
        spec.number_tests.append(_compile_numeric(argument, here))
    elif operator == "anything-but":
        spec.any_tests.append(_compile_anything_but(argument, here, spec))
    elif operator == "exists":
        if argument is True:
            spec.exists = True
        elif argument is False:
            spec.absent_ok = True
        else:
            _fail(here, "exists match pattern must be either true or false")
    elif operator == "cidr":
        spec.ip_ranges.append(_parse_cidr(_string_argument(argument, here, operator), here))
    else:
        _fail(here, f"unrecognized match type {operator!r}")
    _one_key(count, parts)


def _compile_numeric(argument: Any, parts: _PathParts) -> _Test:
    if not _is_array(argument):
        _fail(parts, 'the value of numeric must be an array, like [">", 0, "<=", 5]')
    terms = list(argument)
    if not terms or not isinstance(terms[0], str):
        _fail(parts, f"numeric must start with an operator ({', '.join(_NUMERIC_OPERATORS)})")
    operator = terms[0]
    if operator not in _NUMERIC_OPERATORS:
        _fail((*parts, 0), f"unrecognized numeric operator {operator!r}")
    if len(terms) < 2 or not _is_number(terms[1]):
        _fail((*parts, 1), f"the value of {operator} must be a number")
    value = _numeric_value(terms[1], (*parts, 1), f"the value of {operator}")
    if operator in ("=", "<", "<=") and len(terms) > 2:
        _fail(parts, f"too many elements in numeric expression: nothing may follow {operator} {value!r}")
    if operator == "=":
        return lambda v: v == value
    if operator == "<":
        return lambda v: -_NUMERIC_LIMIT <= v < value
    if operator == "<=":
        return lambda v: -_NUMERIC_LIMIT <= v <= value
    low_open = operator == ">"
    if len(terms) == 2:
        return (lambda v: value < v <= _NUMERIC_LIMIT) if low_open else (lambda v: value <= v <= _NUMERIC_LIMIT)
    second = terms[2]
    if not isinstance(second, str) or second not in ("<", "<="):
        _fail((*parts, 2), f"bad numeric range operator {second!r}: after {operator} only < or <= may follow")
    if len(terms) < 4 or not _is_number(terms[3]):
        _fail((*parts, 3), f"the value of {second} must be a number")
    top = _numeric_value(terms[3], (*parts, 3), f"the value of {second}")
    if len(terms) > 4:
        _fail(parts, "too many terms in numeric range expression")
    if not value < top:
        _fail(parts, f"bottom must be less than top: {value!r} is not less than {top!r}")
    high_open = second == "<"
    if low_open and high_open:
        return lambda v: value < v < top
    if low_open:
        return lambda v: value < v <= top
    if high_open:
        return lambda v: value <= v < top
    return lambda v: value <= v <= top


def _excluding(test: _StrTest) -> _Test:
    """anything-but of a string operator: any present value but a string that the operator matches."""
    return lambda v: not (isinstance(v, str) and test(v))


def _compile_anything_but(argument: Any, parts: _PathParts, spec: _LeafSpec) -> _Test:
    if _is_object(argument):
        kind, inner, count = _single_member(argument, parts, "anything-but expression")
        here = (*parts, kind)
        if kind not in ("equals-ignore-case", "prefix", "suffix", "wildcard"):
            _fail(
                here,
                f"unsupported anything-but pattern {kind!r} (equals-ignore-case, prefix, suffix, wildcard)",
            )
        if _is_array(inner):
            texts = list(inner)
            positions: list[_PathParts] = [(*here, i) for i in range(len(texts))]
        elif isinstance(inner, str) or _is_number(inner):
            texts, positions = [inner], [here]
        else:
            _fail(here, "the value must be a string or an array of strings")
        for text, position in zip(texts, positions, strict=True):
            if not isinstance(text, str):
                _fail(position, f"anything-but {kind} values must be strings, not {text!r}")
            if kind in ("prefix", "suffix") and not text:
                _fail(position, f"an empty anything-but {kind} is not allowed")
        _one_key(count, parts)
        if kind == "equals-ignore-case":
            return _excluding(_ignore_case_set(texts, "equals"))
        if kind == "prefix":
            starts = tuple(texts)
            return _excluding(lambda s: s.startswith(starts))
        if kind == "suffix":
            ends = tuple(texts)
            return _excluding(lambda s: s.endswith(ends))
        tests = []
        for text, position in zip(texts, positions, strict=True):
            pieces = _parse_wildcard(text, position)
            tests.append(_wildcard_test(pieces))
        key = ("anything-but wildcard", frozenset(texts))
        spec.wildcards[key] = [_wildcard_tokens(_parse_wildcard(t, parts)) for t in sorted(set(texts))]
        return _excluding(lambda s: any(t(s) for t in tests))

    if _is_array(argument):
        values = list(argument)
        for i, value in enumerate(values):
            if not isinstance(value, str) and not _is_number(value):
                _fail((*parts, i), f"anything-but values must be strings or numbers, not {value!r}")
        strings = [v for v in values if isinstance(v, str)]
        if not values or (strings and len(strings) != len(values)):
            _fail(parts, "an anything-but list must hold only strings or only numbers (and at least one)")
    elif isinstance(argument, str) or _is_number(argument):
        values = [argument]
    else:
        _fail(parts, "the value of anything-but must be a string, a number, an array or an operator object")

    if isinstance(values[0], str):
        excluded = frozenset(values)
        return lambda v: not (isinstance(v, str) and v in excluded)
    numbers = frozenset(
        _numeric_value(v, (*parts, i) if _is_array(argument) else parts, "an anything-but value")
        for i, v in enumerate(values)
    )
    return lambda v: not (_is_number(v) and v in numbers)


def _always_true(value: Any) -> bool:
    return True


def _ip_test(ranges: list[tuple[int, int, int]]) -> _StrTest:
    def test(value: str) -> bool:
        ip = _parse_ip(value)
        if ip is None:
            return False
        version, address = ip
        return any(v == version and low <= address <= high for v, low, high in ranges)

    return test


def _build_test(spec: _LeafSpec) -> _Test:
    """The closure that says whether one present leaf value (str, number, bool or None) matches the path."""
    if spec.exists:
        return _always_true
    string_tests: list[_StrTest] = []
    strings = frozenset(spec.strings)
    if strings:
        string_tests.append(strings.__contains__)
    if spec.prefixes:
        starts = tuple(spec.prefixes)
        string_tests.append(lambda s: s.startswith(starts))
    if spec.suffixes:
        ends = tuple(spec.suffixes)
        string_tests.append(lambda s: s.endswith(ends))
    for how, texts in spec.ignore_case.items():
        if texts:
            string_tests.append(_ignore_case_set(texts, how))
    string_tests.extend(spec.string_tests)
    if spec.ip_ranges:
        string_tests.append(_ip_test(spec.ip_ranges))
    number_tests = list(spec.number_tests)
    numbers = frozenset(spec.numbers)
    if numbers:
        number_tests.insert(0, lambda v: _number_key(v) in numbers)
    any_tests = tuple(spec.any_tests)
    true_ok, false_ok, null_ok = True in spec.constants, False in spec.constants, None in spec.constants

    only_strings = not (number_tests or any_tests or spec.constants)
    if only_strings and string_tests == [strings.__contains__]:
        return strings.__contains__  # the common case; a set of strings holds no number, bool or None
    if only_strings and len(string_tests) == 1:
        only = string_tests[0]
        return lambda v: v.__class__ is str and only(v)
    str_tests, num_tests = tuple(string_tests), tuple(number_tests)

    def test(value: Any) -> bool:
        kind = value.__class__
        if kind is str:
            for check in str_tests:
                if check(value):
                    return True
        elif kind is int or kind is float:
            for check in num_tests:
                if check(value):
                    return True
        elif kind is bool:
            if true_ok if value else false_ok:
                return True
        elif value is None:
            if null_ok:
                return True
        elif isinstance(value, str):
            if any(check(value) for check in str_tests):
                return True
        elif _is_number(value) and any(check(value) for check in num_tests):
            return True
        for check in any_tests:  # noqa: SIM110 - a plain loop is faster than any() on this hot path
            if check(value):
                return True
        return False

    return test


# ---- compiling a whole pattern -----------------------------------------------------------------------------

_Rule = dict[str, _Leaf]  # one $or alternative: dotted path -> leaf


def _parse_object(value: Any, parts: _PathParts, names: tuple[str, ...], rules: list[_Rule], in_or: bool) -> None:
    """event-ruler's JsonRuleCompiler.parseObject: walk one pattern object, writing leaves into every rule."""
    present = False
    for key, member in _items(value):
        present = True
        if not isinstance(key, str):
            _fail(parts, f"field names must be strings, not {key!r}")
        here = (*parts, key)
        if key == _OR:
            _parse_or(member, here, names, rules)
            continue
        if in_or and key in _RESERVED_IN_OR:
            _fail(here, f"{key!r} is a reserved word and cannot be used as a field name inside $or")
        if _is_object(member):
            _parse_object(member, here, (*names, key), rules, in_or)
        elif _is_array(member):
            leaf = _compile_leaf(member, here)
            if not rules:
                rules.append({})
            path = ".".join((*names, key))
            for rule in rules:
                rule[path] = leaf  # a path written twice keeps the last value, as in event-ruler
        else:
            _fail(here, f"the value of {key!r} must be an object or an array, not {member!r}")
    if not present:
        _fail(parts, "empty objects are not allowed")


def _parse_or(value: Any, parts: _PathParts, names: tuple[str, ...], rules: list[_Rule]) -> None:
    if not _is_array(value):
        _fail(parts, "$or must be an array of at least two objects")
    current = [dict(rule) for rule in rules]
    rules.clear()
    alternatives = list(value)
    for i, alternative in enumerate(alternatives):
        if not _is_object(alternative):
            _fail((*parts, i), "only objects are allowed in a $or array")
        branch = [dict(rule) for rule in current] or [{}]
        _parse_object(alternative, (*parts, i), names, branch, True)
        rules.extend(branch)
        if len(rules) > _MAX_ALTERNATIVES:
            _fail(parts, f"too complex: the $or operators expand to more than {_MAX_ALTERNATIVES} alternatives")
    if len(alternatives) < 2:
        _fail(parts, "$or must hold at least two objects")


def _parse_json(text: str | bytes | bytearray) -> Any:
    def reject_constant(name: str) -> NoReturn:
        raise PatternError(f"invalid JSON: {name} is not a JSON number", "(root)")

    try:
        return json.loads(text, object_pairs_hook=_Pairs, parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise PatternError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", "(root)") from None
    except UnicodeDecodeError as exc:
        raise PatternError(f"invalid JSON: {exc}", "(root)") from None


def _plain(value: Any) -> Any:
    """JSON-ready copy of a pattern (for the length check)."""
    if isinstance(value, _Pairs):
        return {k: _plain(v) for k, v in value}
    if _is_object(value):
        return {str(k): _plain(v) for k, v in value.items()}
    if _is_array(value):
        return [_plain(v) for v in value]
    return value


# ---- the compiled matcher of one $or alternative -----------------------------------------------------------


class _Node:
    __slots__ = ("children", "leaf")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.leaf: _Leaf | None = None

    def absent_ok(self) -> bool:
        """Whether this subtree is satisfied when the event has nothing here."""
        if self.leaf is not None and not self.leaf.absent_ok:
            return False
        return all(child.absent_ok() for child in self.children.values())

    def has_absence(self) -> bool:
        if self.leaf is not None and self.leaf.absent_ok:
            return True
        return any(child.has_absence() for child in self.children.values())

    def joined_keys(self) -> tuple[str, ...]:
        """Dotted keys by which an event could reach this subtree's fields (`b.c` for child b's child c)."""
        found: list[str] = []

        def walk(node: _Node, prefix: str) -> None:
            for segment, child in node.children.items():
                found.append(f"{prefix}.{segment}")
                walk(child, f"{prefix}.{segment}")

        for segment, child in self.children.items():
            walk(child, segment)
        return tuple(dict.fromkeys(found))


def _leaf_evaluator(leaf: _Leaf) -> _Test:
    test, absent_ok = leaf.test, leaf.absent_ok

    def evaluate(value: Any) -> bool:
        kind = value.__class__
        if kind is str:
            return test(value)
        if value is _MISSING or kind is dict:
            return absent_ok
        if kind is list or kind is tuple:
            found = False
            stack = [value]
            while stack:
                for element in stack.pop():
                    element_kind = element.__class__
                    if element_kind is list or element_kind is tuple:
                        stack.append(element)
                    elif element_kind is not dict and not isinstance(element, Mapping):
                        if test(element):
                            return True
                        found = True
            return absent_ok and not found
        if isinstance(value, Mapping):
            return absent_ok
        return test(value)

    return evaluate


def _object_evaluator(node: _Node) -> _Test:
    ordered = sorted(node.children.items(), key=lambda item: bool(item[1].children))  # leaves first: cheaper
    children = tuple((segment, _node_evaluator(child)) for segment, child in ordered)
    joined = node.joined_keys()
    absent_ok = all(child.absent_ok() for child in node.children.values())
    has_absence = any(child.has_absence() for child in node.children.values())

    def evaluate(value: Any) -> bool:
        kind = value.__class__
        if kind is dict:
            for key in joined:
                if key in value:
                    raise _Fallback
            get = value.get
            for segment, child in children:  # noqa: SIM110 - faster than all() on this hot path
                if not child(get(segment, _MISSING)):
                    return False
            return True
        if kind is list or kind is tuple:
            if not value:
                return absent_ok
            if has_absence:
                raise _Fallback
            stack = [value]
            while stack:
                for element in stack.pop():
                    element_kind = element.__class__
                    if element_kind is list or element_kind is tuple:
                        stack.append(element)
                    elif evaluate(element):
                        return True
            return False
        if isinstance(value, Mapping):
            return evaluate(dict(value))
        return absent_ok

    return evaluate


def _node_evaluator(node: _Node) -> _Test:
    leaf = _leaf_evaluator(node.leaf) if node.leaf is not None else None
    obj = _object_evaluator(node) if node.children else None
    if leaf is not None and obj is not None:
        both_leaf, both_obj = leaf, obj
        return lambda value: both_leaf(value) and both_obj(value)
    evaluator = leaf or obj
    assert evaluator is not None
    return evaluator


def _java_order(path: str) -> bytes:
    return path.encode("utf-16-be", "surrogatepass")  # Java sorts strings by UTF-16 code unit


_Membership = dict[int, int]  # array id -> element index


class _Alternative:
    """One $or alternative of a pattern: its fields, a fast matcher, and the literal one."""

    __slots__ = ("conditions", "fast", "prefixes")

    def __init__(self, rule: _Rule) -> None:
        root = _Node()
        for path, leaf in rule.items():
            node = root
            for segment in path.split("."):
                node = node.children.setdefault(segment, _Node())
            node.leaf = leaf
        self.fast = _object_evaluator(root)
        self.conditions = sorted(rule.items(), key=lambda item: _java_order(item[0]))
        prefixes: set[str] = set()
        for path in rule:
            segments = path.split(".")
            prefixes.update(".".join(segments[: n + 1]) for n in range(len(segments)))
        self.prefixes = frozenset(prefixes)

    def matches(self, event: dict[Any, Any]) -> bool:
        try:
            return self.fast(event)
        except _Fallback:
            return _slow_match(self, event)


def _flatten(alternative: _Alternative, event: Mapping[Any, Any]) -> dict[str, list[tuple[Any, _Membership]]]:
    """event-ruler's Event: the event's leaf values by dotted path, each with the array elements it sits in
    (only objects and arrays inside an array record their element). Only the alternative's paths are kept."""
    fields: dict[str, list[tuple[Any, _Membership]]] = {}
    wanted = alternative.prefixes
    next_array = 0
    stack: list[tuple[Any, str | None, _Membership]] = [(event, None, {})]
    while stack:
        value, name, membership = stack.pop()
        if isinstance(value, Mapping):
            for key, member in value.items():
                if not isinstance(key, str):
                    continue
                path = key if name is None else f"{name}.{key}"
                if path in wanted:
                    stack.append((member, path, membership))
        elif _is_array(value) and name is not None:
            array = next_array
            next_array += 1
            for index, element in enumerate(value):
                if isinstance(element, Mapping) or _is_array(element):
                    stack.append((element, name, {**membership, array: index}))
                else:
                    fields.setdefault(name, []).append((element, membership))
        elif name is not None:
            fields.setdefault(name, []).append((value, membership))
    return fields


def _consistent(have: _Membership, other: _Membership) -> _Membership | None:
    for array, index in other.items():
        if have.get(array, index) != index:
            return None
    return {**have, **other} if other else have


def _slow_match(alternative: _Alternative, event: Mapping[Any, Any]) -> bool:
    """event-ruler's array-consistent matcher (ACFinder), literally: the conditions in field-name order, each
    either taking a value consistent with the array elements chosen so far, or, for exists:false, finding no
    such value."""
    fields = _flatten(alternative, event)
    conditions = alternative.conditions

    def search(i: int, membership: _Membership) -> bool:
        if i == len(conditions):
            return True
        path, leaf = conditions[i]
        occurrences = fields.get(path, ())
        for value, where in occurrences:
            merged = _consistent(membership, where)
            if merged is not None and leaf.test(value) and search(i + 1, merged):
                return True
        if leaf.absent_ok and all(_consistent(membership, where) is None for _, where in occurrences):
            return search(i + 1, membership)
        return False

    return search(0, {})


# ---- public API --------------------------------------------------------------------------------------------


class Pattern:
    """A compiled event pattern. `source` is the pattern as given (an object, or its JSON text)."""

    __slots__ = ("_alternatives", "source")

    source: Any

    def __init__(self, source: Any, alternatives: Sequence[_Alternative]) -> None:
        self.source = source
        self._alternatives = tuple(alternatives)

    def matches(self, event: Any) -> bool:
        """Whether the event (a decoded JSON object) matches. Anything but an object matches nothing."""
        if event.__class__ is not dict:
            if not isinstance(event, Mapping):
                return False
            event = dict(event)
        for alternative in self._alternatives:  # noqa: SIM110
            if alternative.matches(event):
                return True
        return False

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


def compile_pattern(pattern: Any) -> Pattern:
    """pattern: a dict, or a JSON string of one. Raises PatternError for any invalid pattern (never at match
    time)."""
    source = pattern
    if isinstance(pattern, (str, bytes, bytearray)):
        pattern = _parse_json(pattern)
    if not _is_object(pattern):
        raise PatternError(f"a pattern must be a JSON object, not {pattern!r}", "(root)")
    rules: list[_Rule] = []
    _parse_object(pattern, (), (), rules, False)
    if not rules:  # an object whose only member was {"$or": ...} with nothing inside cannot get here
        raise PatternError("the pattern has no fields", "(root)")

    length = len(json.dumps(_plain(pattern), separators=(",", ":"), ensure_ascii=False))
    if length > _MAX_PATTERN_LENGTH:
        raise PatternError(f"too long: {length} characters (minified); at most {_MAX_PATTERN_LENGTH}", "(root)")
    wildcards: dict[str, dict[Any, list[list[int]]]] = {}
    for rule in rules:
        if len(rule) > _MAX_FIELDS:
            raise PatternError(f"too many fields: {len(rule)} in one alternative; at most {_MAX_FIELDS}", "(root)")
        for path, leaf in rule.items():
            if leaf.wildcards:
                wildcards.setdefault(path, {}).update(leaf.wildcards)
    for path, by_pattern in wildcards.items():
        complexity = _wildcard_complexity(list(by_pattern.values()), _WILDCARD_COMPLEXITY_LIMIT)
        if complexity >= _WILDCARD_COMPLEXITY_LIMIT:
            raise PatternError(
                "rule is too complex: use fewer wildcard characters, or fewer repeating character sequences "
                f"after a wildcard character (complexity {complexity}, the limit is below "
                f"{_WILDCARD_COMPLEXITY_LIMIT})",
                path,
            )
    unique: dict[tuple[tuple[str, int], ...], _Rule] = {}
    for rule in rules:
        unique.setdefault(tuple(sorted((path, id(leaf)) for path, leaf in rule.items())), rule)
    return Pattern(source, [_Alternative(rule) for rule in unique.values()])


class FilterSet:
    """Several patterns ORed (AWS FilterCriteria.Filters). An empty FilterSet matches everything."""

    __slots__ = ("_alternatives", "patterns")

    def __init__(self, patterns: Sequence[Pattern] = ()) -> None:
        self.patterns: tuple[Pattern, ...] = tuple(patterns)
        self._alternatives = tuple(a for p in self.patterns for a in p._alternatives)

    @classmethod
    def compile(cls, patterns: Sequence[Any]) -> FilterSet:
        """Compile each pattern; a PatternError names the filter's index: `filter 2: ...`."""
        if isinstance(patterns, (str, bytes, bytearray)) or _is_object(patterns):
            raise PatternError("filters must be a list of patterns")
        compiled = []
        for index, pattern in enumerate(patterns):
            try:
                compiled.append(compile_pattern(pattern))
            except PatternError as exc:
                raise PatternError(exc.reason, exc.path, index=index) from None
        return cls(compiled)

    def matches(self, event: Any) -> bool:
        if not self._alternatives:
            return True
        if event.__class__ is not dict:
            if not isinstance(event, Mapping):
                return False
            event = dict(event)
        for alternative in self._alternatives:
            try:
                if alternative.fast(event):
                    return True
            except _Fallback:
                if _slow_match(alternative, event):
                    return True
        return False

    def __len__(self) -> int:
        return len(self.patterns)

    def __repr__(self) -> str:
        return f"FilterSet({[p.source for p in self.patterns]!r})"
