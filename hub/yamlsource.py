"""Reading YAML with line numbers and `${VAR}` / `${VAR:-default}` expansion from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_SURROGATE = re.compile("[\ud800-\udfff]")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


class ConfigError(Exception):
    """A configuration problem, with every error as `file:line:column: field: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class Located:
    """A parsed YAML document and where each value came from."""

    path: str
    data: Any
    marks: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: tuple[Any, ...]) -> str:
        """`file:line:col` of the deepest value along `loc` that the document has.

        Parts of `loc` that are not in the document (a pydantic union tag, a missing key) are skipped, so a
        missing field points at the object that should hold it.
        """
        best = self.marks.get((), (1, 1))
        node: Any = self.data
        found: tuple[Any, ...] = ()
        for part in loc:
            if (isinstance(node, Mapping) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            ):
                node = node[part]
            else:
                continue
            found = (*found, part)
            best = self.marks.get(found, best)
        return f"{self.path}:{best[0]}:{best[1]}"


def expand(value: str, env: Mapping[str, str]) -> str:
    """`value` with each `${VAR}` / `${VAR:-default}` replaced (the default also when VAR is empty) and `$$` made
    `$`. Raises KeyError(VAR) for an unset variable without a default."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] != "" or default is None):
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _VAR.sub(substitute, value)


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Located:
    """Parse `path`. Raises ConfigError (naming the file, line and column) on unreadable files, text that is
    not UTF-8, characters YAML does not allow (NUL), YAML syntax errors, tags, merge keys, keys given twice in one
    mapping, an empty document, unset variables, lone surrogates (`"\\ud800"`), dates that do not exist and
    integers of over 4300 digits, nesting deeper than MAX_DEPTH, an alias inside its own anchor, and aliases that
    expand to more than MAX_VALUES values: never a traceback, whatever the bytes.

    `${VAR}` and `${VAR:-default}` are expanded in each text scalar after parsing, and what they give is text,
    exactly as given: it is never parsed as YAML again (`@x`, `[x`, `a #b`, `0123` and `yes` stay as written),
    so a value can neither break the document nor change its shape. Where a field wants a number or a bool,
    the models convert the text as they would a quoted `"500"`.
    """
    env = os.environ if env is None else env
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read the configuration: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            [f"{name}:{line}:{column}: the configuration is not UTF-8 text (byte 0x{raw[exc.start]:02x})"]
        ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_syntax_error(name, exc)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, another control character)
        raise ConfigError([_reader_error(name, text, exc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: YAML syntax error: {exc}"]) from None
    except RecursionError:  # PyYAML composes recursively: nesting deeper than Python's stack
        raise ConfigError([_too_deep(name, text)]) from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"):
        raise ConfigError([f"{name}:1:1: the configuration is empty (expected `functions:` and `mappings:`)"])
    located = Located(name, None)
    located.data = _Converter(located, env).convert(root, ())
    return located


def _reader_error(name: str, text: str, exc: yaml.reader.ReaderError) -> str:
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    character = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return (
        f"{name}:{line}:{column}: YAML does not allow the character U+{ord(character):04X} in a file: remove it "
        "(in a quoted string, write it as an escape such as \\x07)"
    )


def _too_deep(name: str, text: str) -> str:
    """Where `text` first nests deeper than MAX_DEPTH (the parser's events come without recursion)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                mark = event.start_mark
                if depth > MAX_DEPTH and mark is not None:
                    return f"{name}:{mark.line + 1}:{mark.column + 1}: {_NESTED}"
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return f"{name}:1:1: {_NESTED}"


MAX_DEPTH = 100
"""How deep lists and mappings may nest (a configuration needs a dozen levels; Python's stack ends near 300)."""
MAX_VALUES = 100_000
"""How many values a document may hold once its aliases (`*name`) are expanded: a few aliased lists of aliased
lists would otherwise make billions ("billion laughs")."""
_NESTED = f"lists and mappings nest more than {MAX_DEPTH} levels deep here: a configuration needs far fewer"


def _syntax_error(name: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
    context = ""
    if exc.context and exc.context_mark:
        context = f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
    return f"{where}: YAML syntax error: {exc.problem}{context}"


class _Converter:
    """Builds plain Python data from the YAML node tree, recording each value's line and column and collecting
    every problem (raised together as one ConfigError)."""

    def __init__(self, located: Located, env: Mapping[str, str]) -> None:
        self.located = located
        self.env = env
        self.errors: list[str] = []
        self.constructor = yaml.SafeLoader("")
        self.values = 0
        self.open: set[int] = set()  # the collections being converted, to catch an alias inside its own anchor

    def convert(self, root: yaml.Node, at: tuple[Any, ...]) -> Any:
        try:
            data = self._value(root, at)
        except _TooMany as exc:
            self.errors.append(
                f"{self._where(exc.node)}: {_dotted(exc.at)}: the document holds more than {MAX_VALUES} values once "
                "its aliases (*name) are expanded: write the values out, or alias fewer"
            )
        if self.errors:
            raise ConfigError(self.errors)
        return data

    def _where(self, node: yaml.Node) -> str:
        return f"{self.located.path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def _value(self, node: yaml.Node, at: tuple[Any, ...]) -> Any:
        self.located.marks[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooMany(node, at)
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self.open:
                self.errors.append(
                    f"{self._where(node)}: {_dotted(at)}: an alias (*name) inside its own anchor: "
                    "the value would hold itself forever; write it out"
                )
                return None
            if len(at) >= MAX_DEPTH:
                self.errors.append(f"{self._where(node)}: {_dotted(at[:8])}...: {_NESTED}")
                return None
            self.open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, at)
                return [self._value(item, (*at, i)) for i, item in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str" and "$" in node.value:
            return self._text(node, at, self._expand(node, at))
        return self._text(node, at, self._scalar(node, at))

    def _text(self, node: yaml.Node, at: tuple[Any, ...], value: Any) -> Any:
        """`value`, unless it is text with a lone surrogate (a `"\\ud800"` escape, or an environment variable's
        byte that is not UTF-8): that is no character, and could be neither printed nor sent anywhere."""
        if isinstance(value, str) and _SURROGATE.search(value):
            self.errors.append(
                f"{self._where(node)}: {_dotted(at)}: holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not "
                "a character: write the character itself, or its \\U0001xxxx escape"
            )
            return None
        return value

    def _scalar(self, node: yaml.Node, at: tuple[Any, ...]) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # an unknown tag (`!Ref`, `!!python/...`) or a bad `!!binary`
            problem = getattr(exc, "problem", None) or str(exc)
            self.errors.append(f"{self._where(node)}: {_dotted(at)}: {problem} (YAML tags are not supported)")
            return None
        except ValueError as exc:  # a date that does not exist (2001-02-30), an integer of over 4300 digits
            kind = {"int": "an integer", "timestamp": "a date"}.get(str(node.tag).rpartition(":")[2], "a value")
            why = "too long" if "digits" in str(exc) else str(exc)
            self.errors.append(
                f"{self._where(node)}: {_dotted(at)}: YAML reads this as {kind}, and it is not one ({why}): "
                "quote it if it is text"
            )
            return None

    def _mapping(self, node: yaml.MappingNode, at: tuple[Any, ...]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first: dict[Any, str] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.errors.append(f"{self._where(key_node)}: {_dotted(at)}: YAML merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.startswith("!"):
                self.errors.append(f"{self._where(key_node)}: {_dotted(at)}: a key must be plain text")
                continue
            key = self._text(key_node, at, self._scalar(key_node, at))
            here = f"{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}"
            if key in first:
                # YAML would keep the last value silently: a function or setting written twice is a mistake
                self.errors.append(
                    f"{self._where(key_node)}: {_dotted((*at, key))}: given twice, at line:column {first[key]} and "
                    f"{here}: keep one"
                )
                continue
            first[key] = here
            out[key] = self._value(value_node, (*at, key))
        return out

    def _expand(self, node: yaml.ScalarNode, at: tuple[Any, ...]) -> str:
        try:
            return expand(str(node.value), self.env)
        except KeyError as exc:
            variable = exc.args[0]
            self.errors.append(
                f"{self._where(node)}: {_dotted(at)}: environment variable {variable} is not set "
                f"(set it, or write ${{{variable}:-default}})"
            )
            return str(node.value)


class _TooMany(Exception):
    """The document expands to more than MAX_VALUES values: conversion stops at `node`."""

    def __init__(self, node: yaml.Node, at: tuple[Any, ...]) -> None:
        super().__init__()
        self.node, self.at = node, at


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def dotted(loc: tuple[Any, ...]) -> str:
    """`mappings[0].source.path` from a pydantic or YAML location."""
    return _dotted(loc)
