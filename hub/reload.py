"""Applying a changed configuration to a running hub: only the difference (SIGHUP, `hub reload`, POST /reload).

- A mapping whose configuration is the same, and whose function is the same, keeps running untouched: its lanes,
  its batches in flight, its counters.
- A changed mapping is replaced (Updating: stopped as a hub stop does, then started with the new settings from its
  checkpoint); a new one is created; one that is gone is deleted (stopped; its checkpoints stay in the store).
- A changed function (or `function_defaults`) is loaded anew; the mappings that use it are replaced, and the old
  one is closed once they have stopped.
- An `http` route is added, changed or removed in place on the running HTTP server (a request already routed
  finishes with the route and function it was routed to; a retired function is closed once they have answered).
- What a running hub cannot change in place (the checkpoint store, the cluster, the admin endpoint, the S3
  endpoint, the HTTP server, the region or account) is reported, and applies at the next start; everything else
  is applied. A file whose `http` routes need a listening server on another address is refused as a whole: it
  takes a restart.

The new configuration was validated by the caller (an invalid file never gets here: the running one stays).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hub.config import HubConfig, MappingConfig
from hub.control import ControlError, Mappings
from hub.dispatch import Counters
from hub.functions import Function
from hub.leases import Leases
from hub.logs import fields
from hub.pollers import Pollers
from hub.sync import Rerouted

log = logging.getLogger("hub.reload")

FIXED = ("checkpoints", "cluster", "admin", "s3_endpoint", "http_server", "region", "account_id", "cpu_affinity")
"""Top-level settings a running hub keeps until it is started again."""


class Reloadable(Protocol):
    """What a reload changes of a hub (hub.app.Hub)."""

    config: HubConfig
    only: str | None
    functions: dict[str, Function]
    counters: dict[str, Counters]
    mappings: Mappings
    leases: Leases
    pollers: Pollers | None

    def function_environment(self) -> dict[str, str]:
        """What functions get on top of their own environment (the S3 endpoint's URL and credentials)."""

    async def reroute(self, config: HubConfig, function_of: Callable[[str], Function]) -> Rerouted | None:
        """Serve the sync mappings (`http` routes) of `config` in place; None (nothing changed) if a listening
        server would need another address: a restart."""


@dataclass
class Changes:
    """What a reload did, for its log line and the admin API's answer."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        """The changes as JSON (what `hub reload` prints)."""
        return {k: list(v) for k, v in vars(self).items()}


def _polled(config: HubConfig, only: str | None) -> dict[str, MappingConfig]:
    """The mappings this process reads (not the `http` ones, which its server serves), by name."""
    return {
        m.display_name: m
        for m in config.mappings
        if m.spec.family != "sync" and (only is None or m.display_name == only)
    }


async def apply(hub: Reloadable, new: HubConfig) -> Changes:
    """Make the running `hub` run `new`, changing only what differs."""
    old = hub.config
    changes = Changes()
    changes.needs_restart = [name for name in FIXED if getattr(old, name) != getattr(new, name)]
    pollers = {m.display_name: m.pollers for m in old.mappings}
    if any(
        m.pollers != pollers.get(m.display_name, 1) for m in new.mappings if m.pollers > 1 or m.display_name in pollers
    ):
        changes.needs_restart.append("provisioned_poller_config (the number of poller processes)")

    defaults_changed = old.function_defaults != new.function_defaults
    replaced: dict[str, Function] = {}
    for name, function_config in new.functions.items():
        if name in old.functions and old.functions[name] == function_config and not defaults_changed:
            continue
        replaced[name] = Function.from_config(name, new, hub.function_environment())
    changes.functions = sorted(replaced)
    problem = "its http routes need the HTTP server on another address: restart the hub to apply it"
    try:
        rerouted = await hub.reroute(new, lambda name: replaced.get(name) or hub.functions[name])
    except Exception as exc:  # a route that cannot be served (its signature's secret is not set, its port taken)
        rerouted, problem = None, str(exc)
    if rerouted is None:  # nothing changed
        for function in replaced.values():
            if function.started:
                await function.close()
        log.error("the configuration was not reloaded: %s; the running one stays", problem)
        raise ControlError(f"the configuration was not reloaded: {problem}", 409)
    changes.created += rerouted.created
    changes.updated += rerouted.updated
    changes.deleted += rerouted.deleted
    hub.leases.serve(m.display_name for m in new.mappings if m.leases is not None and m.enabled)

    before, after = _polled(old, hub.only), _polled(new, hub.only)
    for name in before.keys() - after.keys():
        await hub.mappings.delete(name)
        changes.deleted.append(name)
    retired = [hub.functions[name] for name in replaced if name in hub.functions]
    hub.functions.update(replaced)
    hub.config = new
    for name, mapping in after.items():
        if name not in before:
            counters = hub.counters.setdefault(name, Counters())
            await hub.mappings.add(mapping, "CONFIG_RELOAD", counters)
            changes.created.append(name)
        elif mapping != before[name] or mapping.function in replaced:
            await hub.mappings.replace(mapping)
            changes.updated.append(name)
            if hub.pollers is not None and mapping.pollers == before[name].pollers:
                await hub.pollers.recycle(name)
        else:
            changes.unchanged.append(name)
    if rerouted.retired:  # requests they are answering finish first, as a stop lets them
        idle = asyncio.gather(*(mapping.idle() for mapping in rerouted.retired))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle, new.shutdown_grace)
    for function in retired:
        if function.started:
            await function.close()
    for name in set(hub.functions) - set(new.functions):
        gone = hub.functions.pop(name)
        if gone.started:
            await gone.close()
    log.info(
        "configuration reloaded",
        extra=fields(**{k: ",".join(v) for k, v in changes.as_dict().items() if v and k != "unchanged"}),
    )
    if changes.needs_restart:
        log.warning(
            "changed, and applied at the next start only: %s",
            ", ".join(changes.needs_restart),
            extra=fields(needs_restart=",".join(changes.needs_restart)),
        )
    return changes


def check_function(hub: Reloadable, name: str) -> None:
    """ControlError (404) unless the hub has a function of this name."""
    if name not in hub.functions:
        known = ", ".join(sorted(hub.functions)) or "none"
        raise ControlError(f"no function {name!r} (functions: {known})", 404)
