"""The pattern matcher against the EventBridge cases recorded on AWS (tests/conformance/event-patterns).

Each file holds {"Event": ..., "EventPattern": ...} (JSON5). A name ending `_NEG`: the valid pattern must not
match; `_EXC`: the pattern is invalid and must be rejected; any other name: it must match.
`complex_multi_key_event.json` + `complex_multi_key_event_pattern.json` are one case (must match).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import json5
import pytest

from hub.filtering import PatternError, compile_pattern

CASES = Path(__file__).resolve().parent.parent / "conformance" / "event-patterns"
PAIR_EVENT = "complex_multi_key_event.json"
PAIR_PATTERN = "complex_multi_key_event_pattern.json"


def _load(name: str) -> Any:
    return json5.loads((CASES / name).read_text(encoding="utf-8"))


def _expected(name: str) -> str:
    stem = name.rsplit(".", 1)[0]
    if stem.endswith("_EXC"):
        return "invalid"
    return "no match" if stem.endswith("_NEG") else "match"


def _cases() -> list[Any]:
    cases = []
    for path in sorted(CASES.iterdir()):
        if path.name == PAIR_PATTERN:
            continue
        if path.name == PAIR_EVENT:
            # the pattern file repeats a key: AWS keeps the last one, and so does our parser of JSON text
            pattern_text = (CASES / PAIR_PATTERN).read_text(encoding="utf-8")
            case = pytest.param(_load(PAIR_EVENT), pattern_text, "match", id=f"{PAIR_EVENT}+{PAIR_PATTERN}")
        else:
            content = _load(path.name)
            case = pytest.param(content["Event"], content["EventPattern"], _expected(path.name), id=path.name)
        cases.append(case)
    return cases


def test_the_corpus_is_all_here() -> None:
    files = [p.name for p in CASES.iterdir()]
    assert len(files) == 157  # 155 JSON5 cases + the two-file case
    assert len(_cases()) == 156
    assert (CASES.parent / "NOTICE").is_file()


@pytest.mark.parametrize(("event", "pattern", "expected"), _cases())
def test_case(event: Any, pattern: Any, expected: str) -> None:
    as_text = pattern if isinstance(pattern, str) else json.dumps(pattern)
    if expected == "invalid":
        for form in (pattern, as_text):
            with pytest.raises(PatternError) as caught:
                compile_pattern(form)
            assert str(caught.value)
        return
    for form in (pattern, as_text, json.loads(as_text)):  # an object, its JSON text, a re-read object
        assert compile_pattern(form).matches(event) is (expected == "match")
