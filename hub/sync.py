"""Synchronous sources (family `sync`): a request is the event and the function's result is the answer.

An HTTP trigger does not fit the read/batch/settle loop of event source mappings: nothing is read ahead, there is
no batch, no retry and no destination (AWS invokes RequestResponse and the caller sees the failure). So a sync
connector owns a server (ConnectorSpec.serve) that serves every mapping of its type, and each mapping is a
`SyncMapping`: it renders the event (its source), invokes the mapping's Function directly and keeps the counters
that /status and /metrics show. A `SyncRunner` stands in for a MappingRunner in the hub's list, so stop and the
admin pages treat both alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from hub.config import HubConfig, MappingConfig
from hub.dispatch import Counters
from hub.functions import Function
from hub.runtimes import Result


@dataclass
class RequestStats:
    """What an HTTP-like source answered: responses by status code, and how long they took."""

    by_status: dict[int, int] = field(default_factory=dict)
    seconds_sum: float = 0.0
    count: int = 0

    def answered(self, status: int, seconds: float) -> None:
        """Count a response of `status` that took `seconds`."""
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.seconds_sum += seconds
        self.count += 1


class SyncMapping:
    """One enabled mapping of a sync source: its validated source config, its function and its counts."""

    def __init__(self, mapping: MappingConfig, source: Any, function: Function, counters: Counters) -> None:
        self.mapping = mapping
        self.name = mapping.display_name
        self.source = source
        """What the connector's `build` made of the mapping's source config (a route, for `http`)."""
        self.function = function
        self.counters = counters
        self.stats = RequestStats()
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def invoke(self, event: Any) -> Result:
        """One RequestResponse invocation: counted (polled: a request came; invoked; failed_invoke) and logged
        by the Function as every invocation is. Never raises for function faults."""
        self.counters.polled += 1
        self.counters.invoked += 1
        self.in_flight += 1
        self._idle.clear()
        try:
            result = await self.function.invoke(event, mapping=self.name)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
        if not result.ok:
            self.counters.failed_invoke += 1
        return result

    def answered(self, status: int, started: float) -> None:
        """Count a response of `status` to a request received at `started` (monotonic)."""
        self.stats.answered(status, time.monotonic() - started)

    async def idle(self) -> None:
        """Wait until no invocation of this mapping is in flight."""
        await self._idle.wait()


@runtime_checkable
class SyncRoute(Protocol):
    """What a sync connector's `build` makes of one mapping: whatever its server needs, and the lane /status
    lists for it."""

    lane: str
    """The mapping's route as /status shows it (`POST /orders`)."""


class SyncServer(Protocol):
    """The one server of a sync connector type, serving every mapping of that type (ConnectorSpec.serve makes it)."""

    url: str

    async def start(self) -> None:
        """Listen; raises (the hub does not start) when the address is taken."""
        ...

    async def stop(self, grace: float) -> None:
        """Stop accepting; let requests in flight finish within `grace` seconds, then close. Safe to call twice."""
        ...

    def fits(self, mappings: list[SyncMapping]) -> bool:
        """Whether this server can serve `mappings` instead of its own (a reload), listening where it does."""
        ...

    def reroute(self, mappings: list[SyncMapping]) -> None:
        """Serve `mappings` from now on (they fit); requests already routed finish as they were."""
        ...


@dataclass(slots=True)
class SyncContext:
    """What the hub hands a sync connector's `serve`: the configuration and every mapping it serves."""

    config: HubConfig
    mappings: list[SyncMapping]


class SyncRunner:
    """A sync mapping as the hub's list of runners sees it (hub.admin, Hub.run): running while its server is."""

    def __init__(self, mapping: SyncMapping, server: SyncServer) -> None:
        self.sync = mapping
        self.mapping = mapping.mapping
        self.name = mapping.name
        self.counters = mapping.counters
        self.server = server
        self.phase = "running"
        self.lanes = {mapping.source.lane if isinstance(mapping.source, SyncRoute) else mapping.name}
        self.last_error = ""
        self._stopped = asyncio.Event()

    @property
    def state(self) -> str:
        """What /status and /healthz show: `running`, then `stopping`."""
        return self.phase

    @property
    def in_flight_batches(self) -> int:
        """Requests being answered now (what /status shows as in-flight batches)."""
        return self.sync.in_flight

    async def run(self) -> None:
        """Wait until stop(): the server does the work."""
        await self._stopped.wait()

    async def stop(self, grace: float) -> None:
        """Stop the server, letting requests in flight finish within `grace` seconds."""
        self.phase = "stopping"
        await self.server.stop(grace)
        self._stopped.set()


@dataclass
class Rerouted:
    """What a reload changed of the sync mappings, by name, and the mappings it took out of service."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    retired: list[SyncMapping] = field(default_factory=list)


class Serving:
    """The sync mappings of a hub, and the servers that serve them (one per sync connector type, made by its
    ConnectorSpec.serve). A reload changes what the servers serve in place (`reroute`): a request already routed
    finishes with the mapping and function it was routed to."""

    def __init__(self, build: Callable[[MappingConfig, Function], SyncMapping]) -> None:
        self.build = build
        """A SyncMapping of an enabled sync mapping and its (started) function."""
        self.servers: dict[str, SyncServer] = {}
        self.runners: list[SyncRunner] = []

    async def start(self, config: HubConfig, served: list[SyncMapping]) -> None:
        """Start a server for each sync connector type of `served` (listening when this returns); raises, with
        none left listening, when one cannot listen."""
        servers = await _listening(config, _by_type(served))
        self.servers.update(servers)
        self.runners.extend(SyncRunner(mapping, servers[mapping.mapping.spec.type]) for mapping in served)

    async def close(self) -> None:
        """Stop every server at once (after a graceful stop, they are stopped already)."""
        await asyncio.gather(*(server.stop(0.0) for server in self.servers.values()))

    async def reroute(
        self, config: HubConfig, wanted: list[MappingConfig], function_of: Callable[[str], Awaitable[Function]]
    ) -> Rerouted | None:
        """Serve the enabled sync mappings `wanted` of `config` instead of those served now, with the functions
        `function_of(name)` gives: new ones are added, changed ones (or ones whose function changed) replaced, gone
        ones removed (a server left with no route keeps listening), the server of a connector type that had none
        started. None, and nothing changed, when a server already listening would need another address: a
        restart. Raises, with nothing changed, when a new server cannot listen."""
        old = {runner.name: runner.sync for runner in self.runners}
        served: list[SyncMapping] = []
        for mapping in wanted:
            function = await function_of(mapping.function)
            kept = old.get(mapping.display_name)
            if kept is not None and kept.mapping == mapping and kept.function is function:
                served.append(kept)
                continue
            fresh = self.build(mapping, function)
            if kept is not None:
                fresh.stats = kept.stats  # the same route's responses, counted on
            served.append(fresh)
        groups = _by_type(served)
        if not all(self.servers[kind].fits(group) for kind, group in groups.items() if kind in self.servers):
            return None
        self.servers.update(await _listening(config, {k: g for k, g in groups.items() if k not in self.servers}))
        for kind, server in self.servers.items():
            server.reroute(groups.get(kind, []))
        runners = {id(runner.sync): runner for runner in self.runners}
        self.runners = [runners.get(id(m)) or SyncRunner(m, self.servers[m.mapping.spec.type]) for m in served]
        names = {m.name for m in served}
        kept_ids = {id(m) for m in served}
        return Rerouted(
            created=[m.name for m in served if m.name not in old],
            updated=[m.name for m in served if m.name in old and id(old[m.name]) not in kept_ids],
            deleted=[name for name in old if name not in names],
            retired=[m for m in old.values() if id(m) not in kept_ids],
        )


def _by_type(served: list[SyncMapping]) -> dict[str, list[SyncMapping]]:
    groups: dict[str, list[SyncMapping]] = {}
    for sync in served:
        groups.setdefault(sync.mapping.spec.type, []).append(sync)
    return groups


async def _listening(config: HubConfig, groups: dict[str, list[SyncMapping]]) -> dict[str, SyncServer]:
    """A server of each connector type in `groups`, started; if one cannot listen, those started are stopped."""
    servers: dict[str, SyncServer] = {}
    try:
        for kind, group in groups.items():
            spec = group[0].mapping.spec
            assert spec.serve is not None, f"sync connector {kind} has no serve"
            server: SyncServer = spec.serve(SyncContext(config, group))
            await server.start()
            servers[kind] = server
    except BaseException:
        await asyncio.gather(*(server.stop(0.0) for server in servers.values()))
        raise
    return servers
