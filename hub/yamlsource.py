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
    """Parse `path`. Raises ConfigError (naming the file and line) on unreadable files, YAML syntax errors and
    unset variables."""
    env = os.environ if env is None else env
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read the configuration: {exc.strerror or exc}"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        context = ""
        if exc.context and exc.context_mark:
            context = f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        raise ConfigError([f"{where}: YAML syntax error: {exc.problem}{context}"]) from None
    located = Located(name, None)
    errors: list[str] = []
    constructor = yaml.SafeLoader("")

    def convert(node: yaml.Node, at: tuple[Any, ...]) -> Any:
        located.marks[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if key == "<<":
                    errors.append(f"{name}:{key_node.start_mark.line + 1}: YAML merge keys are not supported")
                    continue
                out[key] = convert(value_node, (*at, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(item, (*at, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str" and "$" in node.value:
            try:
                expanded = expand(node.value, env)
            except KeyError as exc:
                line = node.start_mark.line + 1
                errors.append(
                    f"{name}:{line}:{node.start_mark.column + 1}: {_dotted(at)}: environment variable "
                    f"{exc.args[0]} is not set (set it, or write ${{{exc.args[0]}:-default}})"
                )
                return node.value
            if node.style is None and expanded != node.value:
                # An unquoted `${PORT}` becomes what YAML would make of the value (a number, a bool...).
                return yaml.safe_load(expanded) if expanded.strip() else expanded
            return expanded
        return constructor.construct_object(node, deep=True)

    located.data = {} if root is None else convert(root, ())
    if errors:
        raise ConfigError(errors)
    return located


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def dotted(loc: tuple[Any, ...]) -> str:
    """`mappings[0].source.path` from a pydantic or YAML location."""
    return _dotted(loc)
