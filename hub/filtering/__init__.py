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

from hub.filtering.api import FilterSet, Pattern, compile_pattern
from hub.filtering.matcher import _slow_match as _slow_match
from hub.filtering.values import PatternError
from hub.filtering.values import _Fallback as _Fallback

__all__ = ["FilterSet", "Pattern", "PatternError", "compile_pattern"]
