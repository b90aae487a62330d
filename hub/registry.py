"""The connector registry: built-in connectors plus those installed under the entry point group `hub.connectors`.

Connector modules are imported only when a config names their type (or when every type is listed), so
`hub run` on the embedded default never imports a broker client.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points
from typing import TypeVar

from hub.source import ConnectorSpec, DestinationSpec

T = TypeVar("T")

log = logging.getLogger("hub.registry")

BUILTIN = {
    "files": "connectors.files:CONNECTOR",
    "schedule": "connectors.schedule.source:CONNECTOR",
    "kafka": "connectors.kafka:CONNECTOR",
    "kinesis": "connectors.kinesis:CONNECTOR",
    "dynamodb": "connectors.dynamodb:CONNECTOR",
    "redis": "connectors.redis_streams:CONNECTOR",
    "rabbitmq": "connectors.rabbitmq:CONNECTOR",
    "mqtt": "connectors.mqtt:CONNECTOR",
    "nats": "connectors.nats:CONNECTOR",
    "postgres": "connectors.postgres:CONNECTOR",
    "sqs": "connectors.sqs:CONNECTOR",
    "s3": "connectors.s3:CONNECTOR",
    "http": "connectors.http:CONNECTOR",
    "memory": "connectors.memory:CONNECTOR",
}
BUILTIN_DESTINATIONS = {
    "sqs": "connectors.aws_destinations:SQS_DESTINATION",
    "s3": "connectors.aws_destinations:S3_DESTINATION",
    "kafka": "connectors.kafka:DESTINATION",
    "redis": "connectors.redis_streams.destination:DESTINATION",
}
GROUP = "hub.connectors"
DESTINATION_GROUP = "hub.destinations"


def _load(target: str, kind: type[T]) -> T:
    module_name, _, attr = target.partition(":")
    spec = getattr(importlib.import_module(module_name), attr)
    if not isinstance(spec, kind):
        raise TypeError(f"{target} is not a hub.source.{kind.__name__}")
    return spec


@cache
def _targets(group: str = GROUP) -> dict[str, str]:
    targets = dict(BUILTIN if group == GROUP else BUILTIN_DESTINATIONS)
    for ep in entry_points(group=group):
        targets.setdefault(ep.name, ep.value)
    return targets


_registered: dict[str, ConnectorSpec] = {}


def register(spec: ConnectorSpec) -> None:
    """Add a connector from code (for programs that embed the hub, and for tests)."""
    _registered[spec.type] = spec


def names() -> list[str]:
    """Every connector type: built in, installed, or registered from code."""
    return sorted({*_targets(), *_registered})


def get(type_name: str) -> ConnectorSpec:
    """The connector for `type_name`; KeyError if no such connector is installed."""
    if type_name in _registered:
        return _registered[type_name]
    return _load_connector(type_name)


@cache
def _load_connector(type_name: str) -> ConnectorSpec:
    return _load(_targets()[type_name], ConnectorSpec)


def destination_names() -> list[str]:
    """Every destination type: `file` and the installed ones."""
    return sorted(["file", *_targets(DESTINATION_GROUP)])


@cache
def get_destination(type_name: str) -> DestinationSpec:
    """The destination type `type_name` (not `file`, which is built in); KeyError if unknown."""
    return _load(_targets(DESTINATION_GROUP)[type_name], DestinationSpec)


def all_destination_specs() -> list[DestinationSpec]:
    """Every installed destination but `file`; one that cannot be loaded is logged and left out."""
    specs = []
    for name in destination_names():
        if name == "file":
            continue
        try:
            specs.append(get_destination(name))
        except Exception as exc:
            log.warning("destination %s could not be loaded: %s", name, exc)
    return specs


def all_specs(*, installed_only: bool = False) -> list[ConnectorSpec]:
    """Every connector; `installed_only` leaves out those registered from code (the generated docs do)."""
    specs = []
    for name in sorted(_targets()) if installed_only else names():
        try:
            specs.append(get(name))
        except Exception as exc:  # a broken third-party plugin must not hide the others
            log.warning("connector %s could not be loaded: %s", name, exc)
    return specs
