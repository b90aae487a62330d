"""The shape of a SAM template, checked before it is translated: the sections, resources, properties and events
the translator walks are mappings, and each resource's `Type` is text.

CloudFormation refuses a template of another shape before it looks at any value; so does the hub, naming the
line and the logical id, instead of failing somewhere inside the translation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.config.loading import kind_in_words
from hub.yamlsource import dotted

_SECTIONS = ("Parameters", "Conditions", "Mappings", "Resources", "Globals")
_MAPPING = "must be a mapping (`Key: value` lines), not {}"


def problems(template: dict[str, Any], where: Callable[[tuple[Any, ...]], str]) -> list[str]:
    """Every shape problem of `template`, as `file:line:col: path (logical id): what to do`; `where(at)` names
    the place of a path of keys."""
    out: list[str] = []

    def wrong(at: tuple[Any, ...], what: str) -> None:
        logical = f" ({at[1]})" if len(at) > 1 and at[0] == "Resources" else ""
        out.append(f"{where(at)}: {dotted(at)}{logical}: {what}")

    def mapping(value: Any, at: tuple[Any, ...], what: str = _MAPPING) -> bool:
        if isinstance(value, dict):
            return True
        wrong(at, what.format(kind_in_words(value)))
        return False

    for section in _SECTIONS:
        if section in template:
            mapping(template[section], (section,))
    parameters = template.get("Parameters")
    for key, spec in parameters.items() if isinstance(parameters, dict) else ():
        mapping(spec, ("Parameters", key), "a parameter is {{Type: String, Default: ...}}, not {}")
    resources = template.get("Resources")
    for logical_id, resource in resources.items() if isinstance(resources, dict) else ():
        at = ("Resources", logical_id)
        if not mapping(resource, at, "a resource is {{Type: AWS::..., Properties: {{...}}}}, not {}"):
            continue
        kind = resource.get("Type")
        if not isinstance(kind, str):
            what = kind_in_words(kind)
            wrong((*at, "Type"), f"a resource's Type is text (AWS::Serverless::Function, ...), not {what}")
        props = resource.get("Properties")
        if props is None or not mapping(props, (*at, "Properties")):
            continue
        if kind == "AWS::Serverless::Function" and props.get("Events") is not None:
            mapping(props["Events"], (*at, "Properties", "Events"))
    return out


def valid(prop: Any, value: Any) -> bool:
    """Whether SAM's own validator of a property (a samtranslator PropertyType) takes a value of the kind of
    `value` (a mapping, a list, text, a number): the shape only, as what is inside is the translator's to judge
    (SAM's validators refuse some nested values SAM itself takes). Text where SAM wants a number or a boolean is
    left to the hub's models, which read it as they read a quoted `"500"` (a parameter's value is text)."""
    if isinstance(value, str):
        return _takes(prop, "") or _takes(prop, 0) or _takes(prop, True)
    for kind, sample in ((bool, True), (int | float, 0), (dict, {}), (list, [])):
        if isinstance(value, kind):
            return _takes(prop, sample)
    return True  # empty (null): a missing value is the translator's to report


def expected(prop: Any) -> str:
    """What SAM's validator of a property takes, in words: `should be a mapping`."""
    taken = [words for sample, words in _SAMPLES if _takes(prop, sample)]
    if "a number" in taken and "true or false" in taken:  # Python's bool is an int: a number is what is meant
        taken.remove("true or false")
    return f"should be {' or '.join(taken)}" if taken else "is not of a type SAM takes"


_SAMPLES: tuple[tuple[Any, str], ...] = (
    ({}, "a mapping"),
    ([], "a list"),
    ("", "text"),
    (0, "a number"),
    (True, "true or false"),
)


def _takes(prop: Any, value: Any) -> bool:
    try:
        return bool(prop.validate(value))
    except (TypeError, ValueError):
        return False
