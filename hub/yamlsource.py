"""Reading YAML with line numbers and `${VAR}` / `${VAR:-default}` expansion from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    not UTF-8, YAML syntax errors, tags, merge keys, keys given twice in one mapping, an empty document and
    unset variables.

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
    except yaml.YAMLError as exc:  # a reader error: a character YAML does not allow (a control character)
        raise ConfigError([f"{name}: YAML syntax error: {exc}"]) from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == "tag:yaml.org,2002:null"):
        raise ConfigError([f"{name}:1:1: the configuration is empty (expected `functions:` and `mappings:`)"])
    located = Located(name, None)
    located.data = _Converter(located, env).convert(root, ())
    return located


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

    def convert(self, root: yaml.Node, at: tuple[Any, ...]) -> Any:
        data = self._value(root, at)
        if self.errors:
            raise ConfigError(self.errors)
        return data

    def _where(self, node: yaml.Node) -> str:
        return f"{self.located.path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"

    def _value(self, node: yaml.Node, at: tuple[Any, ...]) -> Any:
        self.located.marks[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, at)
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, (*at, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str" and "$" in node.value:
            return self._expand(node, at)
        return self._scalar(node, at)

    def _scalar(self, node: yaml.Node, at: tuple[Any, ...]) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:  # an unknown tag (`!Ref`, `!!python/...`) or a bad `!!binary`
            problem = getattr(exc, "problem", None) or str(exc)
            self.errors.append(f"{self._where(node)}: {_dotted(at)}: {problem} (YAML tags are not supported)")
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
            key = self._scalar(key_node, at)
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


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def dotted(loc: tuple[Any, ...]) -> str:
    """`mappings[0].source.path` from a pydantic or YAML location."""
    return _dotted(loc)
