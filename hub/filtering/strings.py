"""The string operators: equals-ignore-case (whole value, prefix, suffix) and wildcard, with the wildcard
complexity check."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from hub.filtering.values import _fail, _PathParts, _StrTest

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
