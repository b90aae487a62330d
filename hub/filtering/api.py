"""The public API: Pattern, compile_pattern and FilterSet."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from hub.filtering.matcher import _Alternative, _slow_match
from hub.filtering.rules import _parse_json, _parse_object, _plain, _Rule
from hub.filtering.strings import _wildcard_complexity
from hub.filtering.values import (
    _MAX_FIELDS,
    _MAX_PATTERN_LENGTH,
    _WILDCARD_COMPLEXITY_LIMIT,
    PatternError,
    _Fallback,
    _is_object,
)

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
                raise PatternError(exc.reason, exc.path, index=index, parts=exc.parts) from None
        return cls(compiled)

    def matches(self, event: Any) -> bool:
        """True when any pattern matches `event` (any Mapping), or when there are no patterns."""
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
