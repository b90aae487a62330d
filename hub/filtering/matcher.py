"""The compiled matcher of one $or alternative: the fast closures, and the literal re-implementation of
event-ruler's matcher they hand over to (`_slow_match`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.filtering.leaves import _Leaf
from hub.filtering.rules import _Rule
from hub.filtering.values import _MISSING, _Fallback, _is_array, _Test

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
