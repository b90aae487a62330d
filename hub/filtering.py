# PLACEHOLDER written by the lead so the engine runs; helper-1 replaces this whole file.
from typing import Any


class PatternError(ValueError):
    pass


class Pattern:
    def __init__(self, source: Any) -> None:
        self.source = source

    def matches(self, event: Any) -> bool:
        return True


def compile_pattern(pattern: Any) -> Pattern:
    return Pattern(pattern)


class FilterSet:
    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns

    @classmethod
    def compile(cls, patterns: Any) -> "FilterSet":
        return cls([compile_pattern(p) for p in patterns])

    def matches(self, event: Any) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.patterns)
