"""Routing as API Gateway does it: method + path, `{param}` segments, a greedy last `{proxy+}`, `$default`, `ANY`.

The most specific route wins: a literal segment beats a `{param}`, which beats a greedy `{proxy+}`; an exact method
beats `ANY`; `$default` catches what nothing else does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote

T = TypeVar("T")

_PARAM = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")


class RouteError(ValueError):
    """A route that API Gateway would refuse."""


@dataclass(frozen=True, slots=True)
class Route(Generic[T]):
    """A route (`method` and a path template with `{name}` and `{name+}` segments) and what it leads to."""

    method: str
    path: str
    target: T

    @property
    def segments(self) -> list[str]:
        """The path template's segments, without the slashes."""
        return [s for s in self.path.split("/") if s]

    def rank(self) -> tuple[int, ...]:
        """Sort key, most specific first: per segment literal 0, param 1, greedy 2; then longer paths first."""
        ranks = []
        for segment in self.segments:
            found = _PARAM.match(segment)
            ranks.append(0 if found is None else (2 if found.group(2) else 1))
        return (*ranks, 3, 0 if self.method != "ANY" else 1)


def check_path(path: str) -> str:
    """`path` if API Gateway accepts it as a route path; else RouteError saying why."""
    if path == "$default":
        return path
    if not path.startswith("/"):
        raise RouteError("a route path starts with '/' (or is $default)")
    segments = [s for s in path.split("/") if s]
    seen: set[str] = set()
    for i, segment in enumerate(segments):
        if "{" not in segment and "}" not in segment:
            continue
        found = _PARAM.match(segment)
        if found is None:
            raise RouteError(f"segment {segment!r}: a path parameter is a whole segment, {{name}} or {{name+}}")
        if found.group(2) and i != len(segments) - 1:
            raise RouteError(f"{segment}: a greedy path parameter must be the last segment")
        if found.group(1) in seen:
            raise RouteError(f"path parameter {found.group(1)!r} appears twice")
        seen.add(found.group(1))
    return path


def _match(route: Route[T], parts: Sequence[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    segments = route.segments
    for i, segment in enumerate(segments):
        found = _PARAM.match(segment)
        if found is not None and found.group(2):  # greedy: one segment or more
            if i >= len(parts):
                return None
            params[found.group(1)] = "/".join(parts[i:])
            return params
        if i >= len(parts):
            return None
        if found is None:
            if segment != parts[i]:
                return None
        else:
            params[found.group(1)] = parts[i]
    return params if len(parts) == len(segments) else None


class Router(Generic[T]):
    """The routes of one server, matched most specific first."""

    def __init__(self, routes: Sequence[Route[T]]) -> None:
        self.routes = sorted((r for r in routes if r.path != "$default"), key=Route.rank)
        self.default = [r for r in routes if r.path == "$default"]

    def find(self, method: str, path: str) -> tuple[Route[T], dict[str, str]] | None:
        """The route for a request and its path parameters (URL-decoded), or None when no route has this path.

        A route whose path matches but whose method does not is no match (API Gateway answers as if the route
        did not exist). HEAD falls back to a GET route."""
        parts = [unquote(p) for p in path.split("/") if p]
        candidates = [method] if method != "HEAD" else ["HEAD", "GET"]
        for wanted in candidates:
            for route in self.routes:
                if route.method not in (wanted, "ANY"):
                    continue
                params = _match(route, parts)
                if params is not None:
                    return route, params
        for route in self.default:
            if route.method in (method, "ANY"):
                return route, {}
        return None
