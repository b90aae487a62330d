"""The connector registry: built-in connectors plus those installed under the entry point group `hub.connectors`.

Connector modules are imported only when a config names their type (or when every type is listed), so
`hub run` on the embedded default never imports a broker client.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points

from hub.source import ConnectorSpec

log = logging.getLogger("hub.registry")

BUILTIN = {
    "files": "connectors.files:CONNECTOR",
    "schedule": "connectors.schedule.source:CONNECTOR",
}
GROUP = "hub.connectors"


def _load(target: str) -> ConnectorSpec:
    module_name, _, attr = target.partition(":")
    spec = getattr(importlib.import_module(module_name), attr)
    if not isinstance(spec, ConnectorSpec):
        raise TypeError(f"{target} is not a hub.source.ConnectorSpec")
    return spec


@cache
def _targets() -> dict[str, str]:
    targets = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        targets.setdefault(ep.name, ep.value)
    return targets


def names() -> list[str]:
    return sorted(_targets())


@cache
def get(type_name: str) -> ConnectorSpec:
    """The connector for `type_name`; KeyError if no such connector is installed."""
    return _load(_targets()[type_name])


def all_specs() -> list[ConnectorSpec]:
    specs = []
    for name in names():
        try:
            specs.append(get(name))
        except Exception as exc:  # a broken third-party plugin must not hide the others
            log.warning("connector %s could not be loaded: %s", name, exc)
    return specs
