"""A SAM template as the hub configuration it stands for.

`translate(path, overrides, bindings)` reads the template with cfn-lint's CloudFormation loader (which keeps
each node's line), merges `Globals` with aws-sam-translator's own Globals plugin, evaluates parameters,
conditions and intrinsic functions, and builds the hub configuration: one function per
`AWS::Serverless::Function`, one mapping per event. The result is a `Located` whose marks point into the
template, so the hub's validation names the template's lines; every error also names the logical id.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

from hub.sam import events, graph, shape
from hub.sam.bindings import DEFAULT_FILE, Bindings, BindingsFile
from hub.sam.intrinsics import NO_VALUE, Resolver, SamError
from hub.yamlsource import ConfigError, Located, dotted

EXTRA = "pip install 'eventhub[sam]'"
_PSEUDO = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NotificationARNs": ""}


def parse_overrides(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`sam`'s --parameter-overrides: `Key=Value` pairs separated by spaces (quotes keep spaces in a value),
    or `ParameterKey=Key,ParameterValue=Value`. Raises ConfigError."""
    out: dict[str, str] = {}
    for value in values:
        for item in shlex.split(value):
            match = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", item)
            if match is None:
                match = re.fullmatch(r"([A-Za-z0-9]+)=(.*)", item)
            if match is None:
                raise ConfigError([f"--parameter-overrides: {item!r} is not Key=Value"])
            out[match.group(1)] = match.group(2)
    return out


def translate(path: str | Path, overrides: dict[str, str] | None = None, bindings: str | None = None) -> Located:
    """The hub configuration of the SAM template at `path`. Raises ConfigError (file:line:col, logical id)."""
    name = str(path)
    try:
        from cfnlint.decode import decode
        from samtranslator.plugins.globals.globals import Globals, InvalidGlobalsSectionException
    except ImportError:
        raise ConfigError([f"{name}: a SAM template needs aws-sam-translator and cfn-lint: {EXTRA}"]) from None
    template, problems = decode(name)
    if problems or not isinstance(template, dict):
        raise ConfigError(
            [f"{name}:{p.linenumber}:{p.columnnumber}: {p.message}" for p in problems or []]
            or [f"{name}: not a template"]
        )
    shape_problems = shape.problems(template, lambda at: _where(template, name, at))
    if shape_problems:
        raise ConfigError(shape_problems)
    graph_problems = graph.problems(template, lambda at: _where(template, name, at))
    if graph_problems:
        raise ConfigError(graph_problems)
    located = SamLocated(name, None)
    try:
        globals_ = Globals(template)
    except InvalidGlobalsSectionException as exc:
        raise ConfigError([f"{_where(template, name, ('Globals',))}: Globals: {exc.message}"]) from None
    builder = _Builder(name, template, overrides or {}, _bindings(name, template, bindings), globals_)
    located.data = plain(builder.build())
    located.marks = {out: _line(template, at) for out, at in builder.marks.items()}
    located.labels = builder.labels
    located.template, located.resolver, located.bindings = template, builder.resolver, builder.bindings
    if builder.errors:
        raise ConfigError(builder.errors)
    return located


def _bindings(name: str, template: dict[str, Any], path: str | None) -> Bindings:
    from pydantic import ValidationError

    from hub.yamlsource import load

    file = Path(path) if path else Path(name).parent / DEFAULT_FILE
    data: Any = {}
    if path or file.is_file():
        document = load(file)
        data = document.data
        try:
            settings = BindingsFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                [f"{document.where(tuple(e['loc']))}: {dotted(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
            ) from None
    else:
        settings = BindingsFile()
    resources = template.get("Resources") if isinstance(template.get("Resources"), dict) else {}
    return Bindings(settings, dict(resources or {}), str(settings.aws.get("region") or "us-east-1"))


def _number(text: str, at: tuple[Any, ...], builder: _Builder) -> int | float | str:
    """A Number parameter's value as a number (settings such as MaximumRetryAttempts take it so)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        builder.fail(SamError(at, f"{text!r} is not a number (the parameter's Type is Number)"))
        return text


def plain(value: Any) -> Any:
    """Plain dicts, lists and scalars (the loader's nodes are subclasses that carry marks)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool | None):
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def _line(template: Any, at: tuple[Any, ...]) -> tuple[int, int]:
    """Line and column (1-based) of the deepest node along `at` that carries a mark."""
    best, node = (1, 1), template
    for part in at:
        try:
            child = node[part]
        except (KeyError, IndexError, TypeError):
            break
        # a number or boolean carries no mark; its key (a text node) does
        key = next((k for k in node if k == part), None) if isinstance(node, dict) else None
        mark = getattr(child, "start_mark", None) or getattr(key, "start_mark", None)
        node = child
        if mark is not None:
            best = (mark.line + 1, mark.column + 1)
    return best


def _where(template: Any, name: str, at: tuple[Any, ...]) -> str:
    line, column = _line(template, at)
    return f"{name}:{line}:{column}"


class SamLocated(Located):
    """The hub configuration of a template: where() names the template's line and the logical id the setting
    came from (`template.yaml:12:5 (Fn.Events.Queue)`), so that the hub's own errors point into the template."""

    labels: dict[tuple[Any, ...], str]
    template: dict[str, Any]
    """The template as read (its nodes carry their lines)."""
    resolver: Resolver
    """Its parameters, conditions and intrinsic functions, evaluated (hub/sam/resources.py resolves more with it)."""
    bindings: Bindings

    def place(self, at: tuple[Any, ...]) -> str:
        """`file:line:col` of a place in the template (a path of keys from its root)."""
        return _where(self.template, self.path, at)

    def where(self, loc: tuple[Any, ...]) -> str:
        """`file:line:col` of a place, followed by the resource it belongs to when known."""
        label = getattr(self, "labels", {}).get(tuple(loc[:2]))
        return super().where(loc) + (f" ({label})" if label else "")


class _Builder:
    def __init__(
        self, name: str, template: dict[str, Any], overrides: dict[str, str], bindings: Bindings, globals_: Any
    ) -> None:
        self.name = name
        self.template = template
        self.bindings = bindings
        self.globals = globals_
        self.errors: list[str] = []
        self.marks: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.labels: dict[tuple[Any, ...], str] = {}  # ("functions", id) / ("mappings", i) -> logical id
        self.function_urls = 0  # each is served on an address of its own (Bindings.function_url)
        self.resources: dict[str, Any] = template.get("Resources") or {}
        pseudo = {
            **_PSEUDO,
            "AWS::Region": bindings.region,
            "AWS::AccountId": bindings.account,
            "AWS::StackName": Path(name).parent.name or "local",
            "AWS::StackId": "local",
        }
        self.resolver = Resolver(
            self._parameters(overrides),
            pseudo,
            template.get("Conditions") or {},
            template.get("Mappings") or {},
            bindings.ref,
            bindings.getatt,
        )
        bindings.resolve = self.resolver.resolve

    def fail(self, exc: SamError) -> None:
        logical = f" ({exc.at[1]})" if len(exc.at) > 1 and exc.at[0] == "Resources" else ""
        self.errors.append(f"{_where(self.template, self.name, exc.at)}: {dotted(exc.at)}{logical}: {exc.message}")

    def _parameters(self, overrides: dict[str, str]) -> dict[str, Any]:
        declared = self.template.get("Parameters") or {}
        for key in overrides:
            if key not in declared:
                self.errors.append(f"{self.name}: --parameter-overrides: no parameter {key} in the template")
        values: dict[str, Any] = {}
        for key, spec in declared.items():
            at = ("Parameters", key)
            value = overrides.get(key, spec.get("Default") if isinstance(spec, dict) else None)
            if value is None:
                self.fail(SamError(at, f"parameter {key} has no Default: give --parameter-overrides {key}=..."))
                continue
            allowed = spec.get("AllowedValues")
            if isinstance(allowed, list) and str(value) not in [str(a) for a in allowed]:
                self.fail(SamError(at, f"{value!r} is not one of AllowedValues {allowed}"))
            kind = str(spec.get("Type", "String"))
            if kind.startswith(("CommaDelimitedList", "List<")):
                values[key] = str(value).split(",")
            elif kind == "Number":
                values[key] = _number(str(value), at, self)
            else:
                values[key] = str(value)
        return values

    def build(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "region": self.bindings.region,
            "account_id": self.bindings.account,
            "function_defaults": {"aws": self.bindings.connection},
            "functions": {},
            "mappings": [],
        }
        for logical_id, resource in self.resources.items():
            if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
                continue
            at = ("Resources", logical_id)
            try:
                if "Condition" in resource and not self.resolver.condition(resource["Condition"], (*at, "Condition")):
                    continue
                self._function(config, logical_id, resource, at)
            except SamError as exc:
                self.fail(exc)
        watched = {m["source"]["path"] for m in config["mappings"] if m["source"].get("type") == "files"}
        buckets = {}
        for logical_id, resource in self.resources.items():
            if isinstance(resource, dict) and resource.get("Type") == "AWS::S3::Bucket":
                try:
                    bucket = self.bindings.name(logical_id)  # its BucketName may be a !Sub of a missing parameter
                except SamError as exc:
                    self.fail(exc)
                    continue
                if self.bindings.folder(bucket) not in watched:
                    buckets[bucket] = self.bindings.folder(bucket)
        if buckets:
            config["s3_endpoint"] = {"buckets": buckets}
        if self.bindings.settings.http_server is not None:
            config["http_server"] = self.bindings.settings.http_server
        return config

    def _function(self, config: dict[str, Any], logical_id: str, resource: dict[str, Any], at: tuple[Any, ...]) -> None:
        props = resource.get("Properties") or {}
        merged = self.globals.merge("AWS::Serverless::Function", copy.deepcopy(dict(props)))
        raw_events = merged.pop("Events", None) or {}
        values = self.resolver.resolve(merged, (*at, "Properties"))
        out: dict[str, Any] = {}
        here = (*at, "Properties")

        def put(prop: str, field: str, value: Any) -> None:
            out[field] = value
            self.marks[("functions", logical_id, field)] = (*here, prop)

        runtime = values.get("Runtime")
        if values.get("PackageType") == "Image" or not str(runtime or "").startswith("python"):
            what = "an image" if values.get("PackageType") == "Image" else f"Runtime {runtime!r}"
            raise SamError((*here, "Runtime"), f"{what}: the hub runs Python functions only (Runtime: python3.x)")
        if "InlineCode" in values or isinstance(values.get("CodeUri"), dict):
            raise SamError((*here, "CodeUri"), "the hub runs code from a local folder: CodeUri: path/to/src")
        put("Handler", "handler", values.get("Handler"))
        put("CodeUri", "code_uri", str(values.get("CodeUri") or "."))
        for prop, field in (
            ("Timeout", "timeout"),
            ("MemorySize", "memory"),
            ("ReservedConcurrentExecutions", "concurrency"),
            ("Description", "description"),
        ):
            if values.get(prop) is not None:
                put(prop, field, values[prop])
        for prop in ("Environment", "EventInvokeConfig"):
            if not isinstance(values.get(prop) or {}, dict):
                raise SamError((*here, prop), f"{prop} takes a mapping (`Key: value` lines)")
        variables = (values.get("Environment") or {}).get("Variables")
        if variables:
            put("Environment", "environment", variables)
        letter = values.get("DeadLetterQueue")
        if isinstance(letter, dict):
            put(
                "DeadLetterQueue",
                "dead_letter_config",
                events.destination_for(
                    self.bindings, str(letter.get("TargetArn")), SamError((*here, "DeadLetterQueue"), "")
                ),
            )
        invoke = values.get("EventInvokeConfig") or {}
        destinations = invoke.get("DestinationConfig") or {}
        if not isinstance(destinations, dict):
            raise SamError((*here, "EventInvokeConfig", "DestinationConfig"), "DestinationConfig is {OnFailure: ...}")
        if destinations.get("OnSuccess"):
            raise SamError((*here, "EventInvokeConfig"), "OnSuccess destinations are not supported by the hub")
        self.marks[("functions", logical_id)] = at
        self.labels[("functions", logical_id)] = logical_id
        config["functions"][logical_id] = out
        url = values.get("FunctionUrlConfig")
        if isinstance(url, dict):
            self.marks[("mappings", len(config["mappings"]))] = (*here, "FunctionUrlConfig")
            self.labels[("mappings", len(config["mappings"]))] = f"{logical_id}.FunctionUrlConfig"
            config["mappings"].append(
                {
                    "name": f"{logical_id}-Url",
                    "function": logical_id,
                    "source": {
                        "type": "http",
                        "method": "ANY",
                        "path": "$default",
                        "api": "url",
                        "api_id": logical_id.lower(),
                        "listen": self.bindings.function_url(logical_id, self.function_urls),
                    },
                }
            )
            self.function_urls += 1
        for event_id, event in raw_events.items():
            event_at = (*here, "Events", event_id)
            try:
                self._event(config, logical_id, event_id, event, event_at, invoke)
            except SamError as exc:
                self.fail(exc)

    def _event(
        self,
        config: dict[str, Any],
        function: str,
        event_id: str,
        event: Any,
        at: tuple[Any, ...],
        invoke: dict[str, Any],
    ) -> None:
        if not isinstance(event, dict) or "Type" not in event:
            raise SamError(at, "an event is {Type: ..., Properties: {...}}")
        props = self.resolver.resolve(event.get("Properties") or {}, (*at, "Properties"))
        props = {k: v for k, v in props.items() if v is not NO_VALUE} if isinstance(props, dict) else {}
        kind = str(event["Type"])
        self._known_properties(kind, props, at)
        item = events.Event(function, event_id, kind, props, at, self.bindings, invoke)
        mapping = events.mapping(item)
        index = len(config["mappings"])
        self.marks[("mappings", index)] = at
        self.labels[("mappings", index)] = f"{function}.Events.{event_id}"
        for field, where in item.marks.items():
            self.marks[("mappings", index, *field)] = where
        config["mappings"].append(mapping)

    def _known_properties(self, kind: str, props: dict[str, Any], at: tuple[Any, ...]) -> None:
        """Properties SAM itself does not define for this event type are refused, as `sam validate` does."""
        from samtranslator.model.sam_resources import SamFunction

        try:
            cls = SamFunction.event_resolver.resolve_resource_type({"Type": kind})
        except Exception:  # not a SAM event type at all: events.mapping names it
            return
        known = getattr(cls, "property_types", {})
        for key, value in props.items():
            if known and key not in known:
                raise SamError((*at, "Properties", key), f"{key} is not a property of a SAM {kind} event")
            if key in known and not shape.valid(known[key], value):
                raise SamError((*at, "Properties", key), f"{key} {shape.expected(known[key])} in a SAM {kind} event")
