"""What the connector suite (tests/connectors/test_suite.py) needs to know of one connector: a `Kit`.

A kit says what its connector supports, and gives the suite four things: a fresh, uniquely named resource to read
(`fresh`), a way to put numbered records into it (`produce`), a way to read those numbers back from an event its
source rendered (`numbers`), and the source's configuration (`source`). The scenarios use nothing else, so every
connector runs the same ones; tests/connectors/conftest.py turns each kit into a fixture.

This module also holds what the scenarios share: a source built from a kit as the hub builds it (`build`), reading
across every lane of an open source (`take`), and a mapping run in this process by the hub's own MappingRunner
(`InProcessMapping`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hub import registry
from hub.checkpoints import MemoryStore
from hub.config import FunctionConfig, config_model
from hub.dispatch import Counters, Dispatcher
from hub.functions import Function
from hub.health import Health
from hub.mapping import MappingRunner
from hub.records import Outcome, Record, plain
from hub.source import Clock, LaneEnded, SourceContext, SystemClock
from tests.helpers import RunningSource

REGION, ACCOUNT = "us-east-1", "123456789012"


@dataclass
class Resource:
    """One fresh thing to read (a topic, a queue, a stream, a folder), uniquely named, and what its kit keeps of it
    (`extra`: a proxy in front of its broker, records put so far, a clock...)."""

    name: str
    extra: dict[str, Any] = field(default_factory=dict)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Kit(ABC):
    """One connector, as the suite sees it. Subclasses set the class attributes and implement the methods."""

    type: str
    """The connector's `type:`."""
    ordered = False
    """Lanes keep order: records of a lane arrive in the order they were produced, and a failed record is read again
    from where it failed, in order (a stream). False: a failed record comes back on its own (a queue)."""
    redelivers = True
    """A failed record is delivered again without a restart (False: only a restart may run it again: schedules)."""
    rereads_in_session = True
    """A stream that re-reads a failed record in the same session; False: after a restart (Kafka: the group's
    committed offset holds at the failed record, and the lane reads on)."""
    counts_deliveries = False
    """Records carry the broker's delivery count in `attempt` (SQS's ApproximateReceiveCount, Redis's...)."""
    cuttable = True
    """Its broker can be cut off from the hub and restored (a TcpProxy in front of it, or its own switch)."""
    hub_process = True
    """A hub process may be killed (SIGKILL) and started again over the same resource."""
    batched = True
    """batch_size applies (False: one record per invocation, the asynchronous sources')."""
    lanes = 1
    """Lanes of a fresh resource (partitions, shards): ordered lanes run one batch each at a time."""
    mapping: dict[str, Any] = {}
    """Mapping settings of the suite's hubs (`max_concurrency` for the batches in flight of an unordered lane...)."""
    read_ahead = 0
    """Records beyond the batches in flight that a killed hub may have delivered unsettled (a prefetch)."""
    kill_records: int | None = None
    """Records of the SIGKILL scenario (default: 8 batches for each batch that may be in flight)."""
    kill_batch = 10
    """batch_size of the SIGKILL scenario."""
    kill_slow = 0.1
    """Seconds each batch takes in the SIGKILL scenario (SLOW_SECONDS): long enough that the kill comes mid-way."""

    @abstractmethod
    def fresh(self, cuttable: bool = False) -> Resource:
        """A new resource; with `cuttable`, one whose broker `cut` and `restore` act on."""

    @abstractmethod
    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        """Put one record per number into the resource, in order (straight to the broker, never through a cut)."""

    @abstractmethod
    def numbers(self, event: Any) -> list[tuple[str, int]]:
        """(lane, number) of each record of an event the source rendered (or the recorder wrote), in event order."""

    @abstractmethod
    def source(self, resource: Resource) -> dict[str, Any]:
        """The `source:` of a mapping that reads the resource (through the cut switch of a cuttable one)."""

    def clock(self, resource: Resource) -> Clock:
        """The clock its in-process sources run on."""
        return SystemClock()

    def leftover(self, resource: Resource) -> int:
        """Records the broker still holds unsettled (queues: not deleted, not acked); 0 where settling removes
        nothing (streams)."""
        return 0

    def cut(self, resource: Resource) -> None:
        """The broker goes away for the hub: its connections drop and new ones fail (kits whose scenarios cut)."""
        raise TypeError(f"the {self.type} kit cannot cut its broker: leave the broker-cut scenario out of its marks")

    def restore(self, resource: Resource) -> None:
        """The broker is back (kits whose scenarios cut)."""
        raise TypeError(f"the {self.type} kit cannot cut its broker: leave the broker-cut scenario out of its marks")

    def in_flight(self, batch: int) -> int:
        """The most records a killed hub can have delivered without settling: the batches that may be in flight
        (one per ordered lane, `max_concurrency` for an unordered one), and what the broker hands out ahead."""
        parallel = self.lanes if self.ordered else int(self.mapping.get("max_concurrency", 1))
        return parallel * batch + self.read_ahead

    def close(self) -> None:  # noqa: B027 - most kits make nothing that outlives the test
        """Delete what the kit made (at the end of its test)."""


# ---- sources in this process ----------------------------------------------------------------------------------


def build(kit: Kit, resource: Resource, store: MemoryStore) -> Any:
    """The kit's source, built from its configuration as the hub builds it, for a mapping named after the resource."""
    spec = registry.get(kit.type)
    config = spec.config.model_validate(kit.source(resource))
    spec = spec if spec.resolve is None else spec.resolve(config)
    context = SourceContext(
        mapping=resource.name,
        store=store,
        region=REGION,
        account_id=ACCOUNT,
        clock=kit.clock(resource),
        max_in_flight=5,
    )
    return spec.build(config, context)


async def take(run: RunningSource, count: int, timeout: float = 20.0) -> list[Record]:
    """Read `count` records from every lane the open source has yielded (as they come), failing after `timeout`."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    ended: set[str] = set()
    while len(got) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"read {len(got)} of {count} records in {timeout}s (lanes: {sorted(run.lanes)})")
        live = [lane for key, lane in list(run.lanes.items()) if key not in ended]
        if not live:
            await asyncio.sleep(0.02)
        for lane in live:
            try:
                got.extend(await lane.read(count - len(got), 0.05))
            except LaneEnded:
                ended.add(lane.key)
            if len(got) >= count:
                break
    return got


def numbered(kit: Kit, source: Any, records: Iterable[Record]) -> list[tuple[str, int]]:
    """(lane, number) of each record, read back from the event its source renders for it."""
    out = []
    for record in records:
        (pair,) = kit.numbers(plain(source.render([record], 1)))  # as a function gets it
        out.append(pair)
    return out


def by_lane(records: Iterable[Record]) -> dict[str, list[Record]]:
    lanes: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        lanes[record.lane].append(record)
    return dict(lanes)


async def settle(run: RunningSource, records: Iterable[Record], outcome: str = "succeeded") -> None:
    """Settle records as one outcome per lane, as the hub settles a batch."""
    for key, batch in by_lane(records).items():
        await run.lanes[key].settle(Outcome(**{outcome: tuple(batch)}))


# ---- a mapping in this process --------------------------------------------------------------------------------


class InProcessMapping:
    """A mapping of the kit's resource run in this process by the hub's MappingRunner, with the recorder
    (`functions.recorder.record`, in-process: RECORDER_OUT must be set) as its function."""

    def __init__(self, kit: Kit, resource: Resource, **settings: Any) -> None:
        raw = {"name": resource.name, "function": "f", "source": kit.source(resource), **kit.mapping, **settings}
        functions = {"f": {"handler": "functions.recorder.record", "runtime": "in-process"}}
        self.mapping = config_model((kit.type,)).model_validate({"functions": functions, "mappings": [raw]}).mappings[0]
        self.kit, self.resource = kit, resource
        self.runner: MappingRunner | None = None
        self._task: asyncio.Future[None] | None = None
        self._function: Function | None = None

    async def __aenter__(self) -> MappingRunner:
        mapping = self.mapping
        health = Health(mapping.display_name)
        max_in_flight = int(mapping.setting("max_concurrency") or 1)
        context = SourceContext(
            mapping=mapping.display_name,
            store=MemoryStore(),
            region=REGION,
            account_id=ACCOUNT,
            clock=self.kit.clock(self.resource),
            max_in_flight=max_in_flight,
            health=health,
        )
        source = mapping.spec.build(mapping.source, context)
        self._function = Function(
            "f",
            FunctionConfig(runtime="in-process", handler="functions.recorder.record"),
            region=REGION,
            account_id=ACCOUNT,
        )
        await self._function.start()
        counters = Counters()
        dispatcher = Dispatcher(mapping, self._function, source, None, SystemClock(), asyncio.Event(), counters)
        self.runner = MappingRunner(mapping, source, dispatcher, counters, max_in_flight=max_in_flight, health=health)
        self._task = asyncio.ensure_future(self.runner.run())
        return self.runner

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None and self._task is not None and self._function is not None
        await self.runner.stop(5)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._function.close()


async def eventually(condition: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `condition` on the event loop until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value
