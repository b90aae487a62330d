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

    async def invoke(self, event: Any) -> Result:
        """One RequestResponse invocation: counted (polled: a request came; invoked; failed_invoke) and logged
        by the Function as every invocation is. Never raises for function faults."""
        self.counters.polled += 1
        self.counters.invoked += 1
        self.in_flight += 1
        try:
            result = await self.function.invoke(event, mapping=self.name)
        finally:
            self.in_flight -= 1
        if not result.ok:
            self.counters.failed_invoke += 1
        return result

    def answered(self, status: int, started: float) -> None:
        """Count a response of `status` to a request received at `started` (monotonic)."""
        self.stats.answered(status, time.monotonic() - started)


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
