"""CloudFormation's intrinsic functions, evaluated locally: `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::If`,
`Fn::Select`, `Fn::Split`, `Fn::FindInMap` and the condition functions (`Fn::Equals`, `Fn::And`, `Fn::Or`,
`Fn::Not`, `Condition`).

A `Ref` to a parameter gives its value (the override, else its `Default`); a `Ref` or `Fn::GetAtt` to a resource
of the template gives what its local counterpart answers (see hub/sam/bindings.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

NO_VALUE = object()
"""`Ref: AWS::NoValue`: the property it stands in is removed."""

_SUB = re.compile(r"\$\{([^}]*)\}")


class SamError(Exception):
    """A problem at a place of the template: `at` is the path of keys from the template's root."""

    def __init__(self, at: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.at = at
        self.message = message


class Resolver:
    """Evaluates intrinsic functions. `ref(logical_id, at)` and `getatt(logical_id, attribute, at)` answer for
    the template's resources; `parameters` hold every parameter's value, `pseudo` the pseudo parameters."""

    def __init__(
        self,
        parameters: dict[str, Any],
        pseudo: dict[str, str],
        conditions: dict[str, Any],
        mappings: dict[str, Any],
        ref: Callable[[str, tuple[Any, ...]], Any],
        getatt: Callable[[str, str, tuple[Any, ...]], Any],
    ) -> None:
        self.parameters = parameters
        self.pseudo = pseudo
        self.conditions_source = conditions
        self.mappings = mappings
        self._ref = ref
        self._getatt = getatt
        self._conditions: dict[str, bool] = {}

    def condition(self, name: Any, at: tuple[Any, ...]) -> bool:
        """The value of the template's condition `name` (evaluated once)."""
        if not isinstance(name, str) or name not in self.conditions_source:
            raise SamError(at, f"no condition {name!r} under Conditions")
        if name not in self._conditions:
            self._conditions[name] = False  # a condition that refers to itself ends here
            value = self.resolve(self.conditions_source[name], ("Conditions", name))
            if not isinstance(value, bool):
                raise SamError(("Conditions", name), "a condition must be Fn::Equals, Fn::And, Fn::Or or Fn::Not")
            self._conditions[name] = value
        return self._conditions[name]

    def resolve(self, value: Any, at: tuple[Any, ...]) -> Any:
        """`value` with every intrinsic function evaluated; NO_VALUE where `AWS::NoValue` stands."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or key == "Condition" or (isinstance(key, str) and key.startswith("Fn::")):
                    return self._function(str(key), arg, (*at, key))
            out: dict[str, Any] = {}
            for key, item in value.items():
                resolved = self.resolve(item, (*at, key))
                if resolved is not NO_VALUE:
                    out[str(key)] = resolved
            return out
        if isinstance(value, list):
            items = [self.resolve(item, (*at, i)) for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        return value

    def _function(self, name: str, arg: Any, at: tuple[Any, ...]) -> Any:
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise SamError(at, f"{name} is not supported by the hub (supported: {', '.join(sorted(_FUNCTIONS))})")
        return handler(self, arg, at)

    def _fn_ref(self, arg: Any, at: tuple[Any, ...]) -> Any:
        if not isinstance(arg, str):
            raise SamError(at, "Ref takes the name of a parameter or a resource")
        if arg == "AWS::NoValue":
            return NO_VALUE
        if arg in self.pseudo:
            return self.pseudo[arg]
        if arg in self.parameters:
            return self.parameters[arg]
        return self._ref(arg, at)

    def _fn_getatt(self, arg: Any, at: tuple[Any, ...]) -> Any:
        if isinstance(arg, str) and "." in arg:
            arg = arg.split(".", 1)
        arg = self.resolve(arg, at)
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
            raise SamError(at, "Fn::GetAtt takes [LogicalId, Attribute] or LogicalId.Attribute")
        return self._getatt(arg[0], arg[1], at)

    def _fn_sub(self, arg: Any, at: tuple[Any, ...]) -> Any:
        variables: dict[str, Any] = {}
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], dict):
            arg, variables = arg[0], self.resolve(arg[1], (*at, 1))
        if not isinstance(arg, str):
            raise SamError(at, "Fn::Sub takes a string, or [string, {variable: value}]")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _text(variables[name], at)
            if "." in name and name.split(".", 1)[0] not in self.parameters:
                logical_id, attribute = name.split(".", 1)
                return _text(self._getatt(logical_id, attribute, at), at)
            return _text(self._fn_ref(name, at), at)

        return _SUB.sub(substitute, arg)

    def _fn_join(self, arg: Any, at: tuple[Any, ...]) -> Any:
        arg = self.resolve(arg, at)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], list)):
            raise SamError(at, "Fn::Join takes [delimiter, [values]]")
        return arg[0].join(_text(item, at) for item in arg[1])

    def _fn_if(self, arg: Any, at: tuple[Any, ...]) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3):
            raise SamError(at, "Fn::If takes [condition, value if true, value if false]")
        chosen = 1 if self.condition(arg[0], at) else 2
        return self.resolve(arg[chosen], (*at, chosen))

    def _fn_select(self, arg: Any, at: tuple[Any, ...]) -> Any:
        arg = self.resolve(arg, at)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise SamError(at, "Fn::Select takes [index, [values]]")
        try:
            index = int(arg[0])
            if index < 0:  # CloudFormation counts from 0 only: -1 is no item, not the last one
                raise IndexError(index)
            return arg[1][index]
        except (TypeError, ValueError, IndexError):
            raise SamError(at, f"Fn::Select: no item {arg[0]!r} in a list of {len(arg[1])}") from None

    def _fn_split(self, arg: Any, at: tuple[Any, ...]) -> Any:
        arg = self.resolve(arg, at)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and isinstance(arg[1], str)):
            raise SamError(at, "Fn::Split takes [delimiter, string]")
        return arg[1].split(arg[0])

    def _fn_find_in_map(self, arg: Any, at: tuple[Any, ...]) -> Any:
        arg = self.resolve(arg, at)
        if not (isinstance(arg, list) and len(arg) == 3):
            raise SamError(at, "Fn::FindInMap takes [map, top-level key, second-level key]")
        try:
            return self.mappings[arg[0]][arg[1]][arg[2]]
        except (KeyError, TypeError):
            raise SamError(at, f"Fn::FindInMap: no {arg[0]}.{arg[1]}.{arg[2]} under Mappings") from None

    def _fn_equals(self, arg: Any, at: tuple[Any, ...]) -> Any:
        arg = self.resolve(arg, at)
        if not (isinstance(arg, list) and len(arg) == 2):
            raise SamError(at, "Fn::Equals takes [value, value]")
        return _text(arg[0], at) == _text(arg[1], at)

    def _fn_and(self, arg: Any, at: tuple[Any, ...]) -> Any:
        return all(self._boolean(item, (*at, i)) for i, item in enumerate(_list(arg, at)))

    def _fn_or(self, arg: Any, at: tuple[Any, ...]) -> Any:
        return any(self._boolean(item, (*at, i)) for i, item in enumerate(_list(arg, at)))

    def _fn_not(self, arg: Any, at: tuple[Any, ...]) -> Any:
        items = _list(arg, at)
        if len(items) != 1:
            raise SamError(at, "Fn::Not takes [condition]")
        return not self._boolean(items[0], (*at, 0))

    def _fn_condition(self, arg: Any, at: tuple[Any, ...]) -> Any:
        return self.condition(arg, at)

    def _boolean(self, value: Any, at: tuple[Any, ...]) -> bool:
        resolved = self.resolve(value, at)
        if not isinstance(resolved, bool):
            raise SamError(at, "expected a condition (Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition)")
        return resolved


def _list(arg: Any, at: tuple[Any, ...]) -> list[Any]:
    if not isinstance(arg, list):
        raise SamError(at, "expected a list of conditions")
    return arg


def _text(value: Any, at: tuple[Any, ...]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise SamError(at, f"expected a text value here, not {type(value).__name__}")


_FUNCTIONS: dict[str, Callable[[Resolver, Any, tuple[Any, ...]], Any]] = {
    "Ref": Resolver._fn_ref,
    "Condition": Resolver._fn_condition,
    "Fn::GetAtt": Resolver._fn_getatt,
    "Fn::Sub": Resolver._fn_sub,
    "Fn::Join": Resolver._fn_join,
    "Fn::If": Resolver._fn_if,
    "Fn::Select": Resolver._fn_select,
    "Fn::Split": Resolver._fn_split,
    "Fn::FindInMap": Resolver._fn_find_in_map,
    "Fn::Equals": Resolver._fn_equals,
    "Fn::And": Resolver._fn_and,
    "Fn::Or": Resolver._fn_or,
    "Fn::Not": Resolver._fn_not,
}
