"""The kits of the connectors that need no broker: `memory` (a stream, and a queue), `files` and `schedule`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors import memory
from hub.source import Clock
from tests.connectors.kit import Kit, Resource, unique
from tests.helpers import MovableClock


class MemoryKit(Kit):
    """A memory stream of two lanes. Its records are also in `records:`, so that a hub process puts them again at
    each start (the channel lives in the process): its checkpoints, in the hub's store, say what settled."""

    type = "memory"
    ordered = True
    lanes = 2

    def __init__(self) -> None:
        self.made: list[str] = []

    def fresh(self, cuttable: bool = False) -> Resource:
        name = unique("memory")
        memory.create(name, **self._shape())
        self.made.append(name)
        return Resource(name, {"records": []})

    def _shape(self) -> dict[str, Any]:
        return {"mode": "stream", "lanes": self.lanes}

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        values = [{"n": n} for n in numbers]
        resource.extra["records"].extend(values)
        memory.put(resource.name, *values)

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [(record["lane"], record["data"]["n"]) for record in event["Records"]]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {"type": "memory", "name": resource.name, **self._shape(), "records": list(resource.extra["records"])}

    def leftover(self, resource: Resource) -> int:
        return 0

    def cut(self, resource: Resource) -> None:
        memory.cut(resource.name)

    def restore(self, resource: Resource) -> None:
        memory.restore(resource.name)

    def close(self) -> None:
        for name in self.made:
            memory.delete(name)


class MemoryQueueKit(MemoryKit):
    """A memory queue: nothing of it outlives the process, so no hub process can be killed over it."""

    ordered = False
    counts_deliveries = True
    hub_process = False
    lanes = 1
    mapping = {"max_concurrency": 2}

    def _shape(self) -> dict[str, Any]:
        return {"mode": "queue"}

    def source(self, resource: Resource) -> dict[str, Any]:
        return {"type": "memory", "name": resource.name, "mode": "queue"}

    def leftover(self, resource: Resource) -> int:
        return memory.waiting(resource.name)


class FilesKit(Kit):
    """A folder; each record is a file `fNNNNN.dat`. A failed file comes back at the next rescan."""

    type = "files"
    batched = False
    cuttable = False
    mapping = {"max_concurrency": 8}
    kill_records = 1000
    kill_slow = 0.005

    def __init__(self, root: Path) -> None:
        self.root = root

    def fresh(self, cuttable: bool = False) -> Resource:
        name = unique("inbox")
        (self.root / name).mkdir()
        return Resource(name, {"path": self.root / name})

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        for n in numbers:
            (resource.extra["path"] / f"f{n:05d}.dat").write_bytes(b"%d" % n)  # complete once closed

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [(r["s3"]["bucket"]["name"], int(r["s3"]["object"]["key"][1:6])) for r in event["Records"]]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {
            "type": "files",
            "path": str(resource.extra["path"]),
            "rescan_interval": "200ms",
            "settle_time": "100ms",
        }


T0 = 1_800_000_000 - 1_800_000_000 % 60
"""Where the schedule kit's clocks start: on a whole minute."""


class ScheduleKit(Kit):
    """`rate(1 minute)` on a clock that jumps to each fire: the fires come as fast as they are read. Record n is
    the (n + 1)th fire after the clock's start; producing is nothing (a schedule fires by itself). A failed fire runs
    again only after a restart, by the misfire policy (`run_all`)."""

    type = "schedule"
    batched = False
    redelivers = False
    cuttable = False
    hub_process = False

    def fresh(self, cuttable: bool = False) -> Resource:
        return Resource(unique("schedule"), {"clock": MovableClock(float(T0))})

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        pass

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        fired = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
        return [("schedule", round((fired - T0) / 60) - 1)]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {"type": "schedule", "expression": "rate(1 minute)", "misfire": "run_all"}

    def clock(self, resource: Resource) -> Clock:
        clock: Clock = resource.extra["clock"]
        return clock
