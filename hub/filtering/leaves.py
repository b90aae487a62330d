"""Compiling one leaf of a pattern (the array of values of one path) and its operators into a test closure."""

from __future__ import annotations

import math
from typing import Any

from hub.filtering.strings import _ignore_case_set, _parse_wildcard, _wildcard_test, _wildcard_tokens
from hub.filtering.values import (
    _NUMERIC_LIMIT,
    _NUMERIC_OPERATORS,
    _fail,
    _is_array,
    _is_number,
    _is_object,
    _items,
    _number_key,
    _numeric_value,
    _parse_cidr,
    _parse_ip,
    _PathParts,
    _StrTest,
    _Test,
)

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
