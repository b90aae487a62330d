"""What a template's resources and conditions depend on, checked before it is translated, as CloudFormation
checks it before it creates anything: a `DependsOn` names a resource of the template (or one SAM's transform makes
of it: `FnRole`, `ApiProdStage`, `ServerlessRestApi`...), and no resource or condition depends on itself, directly
or through others.

A resource depends on the resources its `DependsOn` names and on those its `Ref`, `Fn::GetAtt` and `Fn::Sub`
(`${Name}`, `${Name.Attribute}`) point at; a condition on the conditions its `Condition` functions name. The hub
runs a template's resources without creating them in any order, so a cycle would go unnoticed until the template
reached AWS, which refuses it: the hub refuses it first, naming the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from hub.yamlsource import dotted

_SAM = "AWS::Serverless::"
_SUB = re.compile(r"\$\{([^!}][^}]*)\}")


def problems(template: dict[str, Any], where: Callable[[tuple[Any, ...]], str]) -> list[str]:
    """Every dependency problem of `template`, as `file:line:col: path (logical id): what is wrong`."""
    out: list[str] = []
    resources = template.get("Resources")
    resources = resources if isinstance(resources, dict) else {}
    serverless = [str(k) for k, r in resources.items() if isinstance(r, dict) and str(r.get("Type")).startswith(_SAM)]
    needs: dict[str, dict[str, tuple[Any, ...]]] = {}
    """For each resource, the resources it depends on, each with the place of the first mention."""
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict):
            continue
        at = ("Resources", logical_id, "DependsOn")
        named = resource.get("DependsOn")
        named = [named] if isinstance(named, str) else named if isinstance(named, list) else []
        missing = [n for n in named if n not in resources and not _generated(n, serverless)]
        if missing:
            names = ", ".join(map(str, missing))
            out.append(
                f"{where(at)}: Resources.{logical_id}.DependsOn ({logical_id}): no resource {names} in the template"
                " (CloudFormation: unresolved resource dependencies)"
            )
        edges = needs[str(logical_id)] = {}
        for i, n in enumerate(named):
            if n in resources:
                edges.setdefault(str(n), (*at, i) if isinstance(resource["DependsOn"], list) else at)
        for n, place in _references(resource.get("Properties"), ("Resources", logical_id, "Properties")):
            if n in resources:
                edges.setdefault(str(n), place)
    for cycle in _cycles({node: list(edges) for node, edges in needs.items()}):
        first = cycle[0]
        place = needs[first][cycle[1] if len(cycle) > 1 else first]
        out.append(
            f"{where(place)}: {dotted(place)} ({first}): circular dependency between resources: "
            f"{' -> '.join([*cycle, first])} (through DependsOn, Ref, Fn::GetAtt or Fn::Sub)"
        )
    conditions = template.get("Conditions")
    conditions = conditions if isinstance(conditions, dict) else {}
    uses = {
        str(name): sorted({str(n) for n in _conditions(body) if n in conditions}) for name, body in conditions.items()
    }
    for cycle in _cycles(uses):
        first = cycle[0]
        out.append(
            f"{where(('Conditions', first))}: Conditions.{first}: circular dependency between conditions: "
            f"{' -> '.join([*cycle, first])}"
        )
    return out


def _generated(name: Any, serverless: list[str]) -> bool:
    """Whether `name` may be a resource SAM's transform makes (a function's `FnRole`, an API's `ApiProdStage`, the
    implicit `ServerlessRestApi`...): each is named after its SAM resource, which a DependsOn may name."""
    return isinstance(name, str) and name.startswith((*serverless, "ServerlessRestApi", "ServerlessHttpApi"))


def _references(value: Any, at: tuple[Any, ...]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """The logical ids that `Ref`, `Fn::GetAtt` and `Fn::Sub` in `value` (at `at`) point at, parameters among
    them, each with the path of the value that points."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _references(item, (*at, i))
        return
    if not isinstance(value, dict):
        return
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            yield arg, at
            return
        if key == "Fn::GetAtt":
            target = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0] if isinstance(arg, list) and arg else None
            if isinstance(target, str):
                yield target, at
            return
        if key == "Fn::Sub":
            yield from _sub_references(arg, at)
            return
    for key, item in value.items():
        yield from _references(item, (*at, key))


def _sub_references(arg: Any, at: tuple[Any, ...]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """What `Fn::Sub: text` or `Fn::Sub: [text, {variables}]` points at: `${Name}` and `${Name.Attribute}` that
    are not its own variables (nor `${!Literal}`), and what its variables' values point at."""
    text, variables = (
        (arg, {}) if isinstance(arg, str) else ([*arg, None, None][:2] if isinstance(arg, list) else (None, None))
    )
    own = variables if isinstance(variables, dict) else {}
    for name in _SUB.findall(text) if isinstance(text, str) else ():
        name = name.strip().split(".", 1)[0]
        if name not in own:
            yield name, at
    for key, item in own.items():
        yield from _references(item, (*at, "Fn::Sub", 1, key))


def _conditions(value: Any) -> Iterator[str]:
    """The conditions that `Condition` functions in a condition's body name."""
    if isinstance(value, list):
        for item in value:
            yield from _conditions(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Condition" and isinstance(item, str):
                yield item
            else:
                yield from _conditions(item)


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """One cycle of each strongly connected part that has one (a node on a cycle appears in one only), each in the
    order of its edges, from its first node in template order."""
    order = {node: i for i, node in enumerate(edges)}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []
    found: list[list[str]] = []
    seen: set[str] = set()

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :]
                if not seen.intersection(cycle):
                    start = min(range(len(cycle)), key=lambda i: order.get(cycle[i], 0))
                    found.append(cycle[start:] + cycle[:start])
                    seen.update(cycle)
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node)
    return found
