"""Loading a configuration: the models of the connectors it names joined into one, and every error located.

`validate` looks at the parsed document first, only to learn which connectors and destinations it names (an
unknown or uninstalled one is an error at once), then validates it with `config_model` of those: HubConfig
whose `source`, `on_failure` and `dead_letter_config` are the unions of their models. Every error names the
file, the line, the column and the field, and never shows a value that may be a secret.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, ValidationError, create_model

from hub import registry
from hub.config.functions import FunctionConfig
from hub.config.hub import HubConfig
from hub.config.mappings import DestinationConfig, FileDestination, MappingConfig
from hub.source import ConnectorSpec, SettingError
from hub.yamlsource import ConfigError, Located, dotted, load

_SENSITIVE = re.compile(r"pass|secret|token|key|credential|auth", re.I)


@cache
def config_model(
    types: tuple[str, ...], destinations: tuple[str, ...] = (), dead_letters: tuple[str, ...] = ()
) -> type[HubConfig]:
    """HubConfig whose `mappings[].source` is the union of the named connectors' models, whose
    `destination_config.on_failure` is the union of `file` and the named connectors' destinations, and whose
    `functions[].dead_letter_config` is the union of `file` and the named dead-letter destinations."""
    models = tuple(registry.get(t).config for t in types)
    dest_models: tuple[Any, ...] = (FileDestination, *tuple(registry.get_destination(t).config for t in destinations))
    source_type: Any = _union(models) if models else Any  # no mappings (validate reports sources without a type)
    destination = create_model(
        "DestinationConfig", __base__=DestinationConfig, on_failure=(_union(dest_models) | None, None)
    )
    mapping = create_model(
        "MappingConfig",
        __base__=MappingConfig,
        source=(source_type, ...),
        destination_config=(destination, Field(default_factory=destination)),
    )
    dlq_models: tuple[Any, ...] = (FileDestination, *tuple(registry.get_destination(t).config for t in dead_letters))
    function = create_model(
        "FunctionConfig", __base__=FunctionConfig, dead_letter_config=(_union(dlq_models) | None, None)
    )
    return create_model(
        "HubConfig",
        __base__=HubConfig,
        mappings=(list[mapping], []),
        functions=(dict[str, function], Field(default_factory=dict)),
    )


def _union(models: tuple[Any, ...]) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007


def full_model() -> type[HubConfig]:
    """The model of every installed connector and destination (for the JSON Schema)."""
    return config_model(
        tuple(spec.type for spec in registry.all_specs(installed_only=True)),
        tuple(spec.type for spec in registry.all_destination_specs()),
        tuple(spec.type for spec in registry.all_destination_specs() if spec.dead_letter),
    )


def validate(located: Located) -> HubConfig:
    """Validate a parsed document; raises ConfigError with every problem located."""
    data = located.data
    if not isinstance(data, dict):
        raise ConfigError([f"{located.where(())}: the configuration must be a mapping (key: value)"])
    errors: list[str] = []
    types: set[str] = set()
    destinations: set[str] = set()
    mappings = data.get("mappings")
    # Only a list of mappings is looked into here; anything else is left to the model, which says what it wants.
    for i, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        if not isinstance(mapping, dict):
            continue
        source = mapping.get("source")
        if isinstance(source, dict):
            _source_type(located, ("mappings", i, "source"), source.get("type"), types, errors)
        else:
            at: tuple[Any, ...] = ("mappings", i, "source")
            what = "required" if source is None else "must be a mapping"
            errors.append(
                f"{located.where(at)}: {dotted(at)}: {what}: `{{type: ..., ...}}` (types: "
                f"{', '.join(registry.names())})"
            )
        dest = mapping.get("destination_config")
        target = dest.get("on_failure") if isinstance(dest, dict) else None
        dest_kind = target.get("type") if isinstance(target, dict) else None
        if isinstance(dest_kind, str) and dest_kind != "file":
            dest_at: tuple[Any, ...] = ("mappings", i, "destination_config", "on_failure", "type")
            _usable(located, dest_at, dest_kind, "destination type", "one of", DESTINATIONS, destinations, errors)
    dead_letters = _dead_letter_types(located, errors)
    if errors:
        raise ConfigError(errors)
    _resolve_code_uris(data, Path(located.path).parent)
    # always the joined model, even without mappings: a function's dead_letter_config is checked too
    model = config_model(tuple(sorted(types)), tuple(sorted(destinations)), tuple(sorted(dead_letters)))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(located, err) for err in exc.errors()]) from None


def _source_type(located: Located, at: tuple[Any, ...], kind: Any, types: set[str], errors: list[str]) -> None:
    """Check a mapping's `source.type` (a source that is not a mapping is left to the model): add a usable one
    to `types`, a problem to `errors`."""
    at = (*at, "type")
    if kind is None:
        errors.append(f"{located.where(at)}: {dotted(at)}: required (one of: {', '.join(registry.names())})")
    else:
        _usable(located, at, kind, "source type", "installed", SOURCES, types, errors)


SOURCES = (registry.names, registry.get)
DESTINATIONS = (registry.destination_names, registry.get_destination)


def _usable(
    located: Located,
    at: tuple[Any, ...],
    kind: Any,
    noun: str,
    listed: str,
    lookup: tuple[Any, Any],
    found: set[str],
    errors: list[str],
) -> None:
    """A connector or destination `type` at `at`: add a usable one to `found`; an unknown one, or one whose
    optional library is missing, is a problem in `errors`."""
    names, get = lookup
    if not isinstance(kind, str) or kind not in names():
        errors.append(f"{located.where(at)}: {dotted(at)}: unknown {noun} {kind!r} ({listed}: {', '.join(names())})")
        return
    found.add(kind)
    missing = _missing(get(kind))
    if missing:
        errors.append(f"{located.where(at)}: {dotted(at)}: {missing}")


def _resolve_code_uris(data: dict[str, Any], folder: Path) -> None:
    """A relative `code_uri` names a folder next to the configuration file, as SAM's CodeUri does."""
    functions = data.get("functions")
    if not isinstance(functions, dict):
        return
    for function in functions.values():
        code_uri = function.get("code_uri") if isinstance(function, dict) else None
        # a NUL is left to the model, which says the folder does not exist (a path cannot hold one)
        if isinstance(code_uri, str) and code_uri and "\0" not in code_uri and not Path(code_uri).is_absolute():
            function["code_uri"] = str((folder / code_uri).resolve())


def _dead_letter_types(located: Located, errors: list[str]) -> set[str]:
    """The destination types the functions' `dead_letter_config` name (besides `file`); problems go to `errors`."""
    functions = located.data.get("functions")
    found: set[str] = set()
    for name, function in functions.items() if isinstance(functions, dict) else ():
        target = function.get("dead_letter_config") if isinstance(function, dict) else None
        kind = target.get("type") if isinstance(target, dict) else None
        if kind is None or kind == "file":
            continue
        at: tuple[Any, ...] = ("functions", name, "dead_letter_config", "type")
        usable = [spec.type for spec in registry.all_destination_specs() if spec.dead_letter]
        if kind not in usable:
            errors.append(
                f"{located.where(at)}: {dotted(at)}: {kind!r} cannot be a dead-letter queue: it has no message "
                f"attributes to carry RequestID, ErrorCode and ErrorMessage (one of: file, {', '.join(usable)})"
            )
            continue
        found.add(kind)
        missing = _missing(registry.get_destination(kind))
        if missing:
            errors.append(f"{located.where(at)}: {dotted(at)}: {missing}")
    return found


def _missing(spec: Any) -> str:
    """Why `spec` cannot run here (an optional dependency is not installed), or ""."""
    import importlib.util

    absent = [name for name in spec.requires if importlib.util.find_spec(name) is None]
    if not absent:
        return ""
    return (
        f"the {spec.type} {'connector' if isinstance(spec, ConnectorSpec) else 'destination'} needs "
        f"{', '.join(absent)}, which is not installed: pip install 'eventhub[{spec.extra}]' "
        "(or 'eventhub[all]'; `make test` installs every extra)"
    )


def _describe(located: Located, err: Any) -> str:
    loc = tuple(err["loc"])
    message = err["msg"]
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, SettingError):
        loc = loc + ctx_error.at
        message = str(ctx_error)
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown setting (check its spelling; settings are AWS's names in snake_case)"
    elif err["type"] in _CONTAINERS:
        message = f"{_CONTAINERS[err['type']]}, not {kind_in_words(err.get('input'))}"
    show_input = err["type"] not in {"extra_forbidden", "missing", "value_error", *_CONTAINERS} and "input" in err
    if loc and loc[-1] == "[key]":  # a key that is not text (`1:`, `true:`): pydantic adds this marker
        loc, message, show_input = loc[:-1], "this key must be text (quote it)", False
    # drop pydantic's union tags (`source.files.path` -> `source.path`, `on_failure.sqs.queue_url` -> ...)
    tags = {
        "source": set(registry.names()),
        "on_failure": set(registry.destination_names()),
        "dead_letter_config": {"file", *registry.destination_names()},
        "filter_criteria": {"FilterCriteria", "list"},
    }
    shown = tuple(
        p for i, p in enumerate(loc) if not (i and isinstance(loc[i - 1], str) and p in tags.get(loc[i - 1], ()))
    )
    if show_input:
        shown_input = err["input"]
        if not isinstance(shown_input, dict | list) and not _SENSITIVE.search(dotted(shown)):
            message = f"{message} (got {json.dumps(shown_input, default=str)})"
    return f"{located.where(loc)}: {dotted(shown)}: {message}"


_CONTAINERS = {
    "list_type": "must be a list (items written `- ...`, or `[a, b]`)",
    "dict_type": "must be a mapping (`key: value` lines, or `{key: value}`)",
    "model_type": "must be a mapping (`key: value` lines, or `{key: value}`)",
    "model_attributes_type": "must be a mapping (`key: value` lines, or `{key: value}`)",
}


def kind_in_words(value: Any) -> str:
    """What a YAML value is, in words that never show the value itself (it may be a secret)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else "text"


def load_config(path: str | Path, env: dict[str, str] | None = None) -> HubConfig:
    """Load and validate a configuration file. Raises ConfigError."""
    return validate(load(path, env))
