"""Compiling a whole pattern into rules (event-ruler's JsonRuleCompiler): one dotted path -> leaf map per $or
alternative."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from hub.filtering.leaves import _compile_leaf, _Leaf
from hub.filtering.values import (
    _MAX_ALTERNATIVES,
    _OR,
    _RESERVED_IN_OR,
    PatternError,
    _fail,
    _is_array,
    _is_object,
    _items,
    _Pairs,
    _PathParts,
)

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
