"""Tumbling windows (`tumbling_window` on Kinesis and DynamoDB Streams mappings), as AWS runs them.

Windows are aligned to multiples of the window length in record arrival time, per lane. Every invocation of a
window gets the state the previous one returned ({} at first) and must return `{"state": ...}`. When the
window's end passes (or a record of a later window arrives), a final invocation with no records and
`isFinalInvokeForWindow: true` closes it; only then are the window's records checkpointed, so a hub that stops
mid-window aggregates that window again from its first record. A state over 1 MB ends the window early.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hub.records import Outcome, Record
from hub.source import ArnSource, Lane, LaneEnded

if TYPE_CHECKING:
    from hub.mapping import MappingRunner

MAX_STATE = 1024 * 1024


@dataclass
class Window:
    """A tumbling window of one lane: its bounds, the state carried between its invocations, and flags."""

    start: float
    end: float
    shard_id: str
    source_arn: str
    state: Any = field(default_factory=dict)
    final: bool = False
    terminated_early: bool = False

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        return {
            **event,
            "window": {"start": iso_seconds(self.start), "end": iso_seconds(self.end)},
            "state": self.state,
            "shardId": self.shard_id,
            "eventSourceARN": self.source_arn,
            "isFinalInvokeForWindow": self.final,
            "isWindowTerminatedEarly": self.terminated_early,
        }


def iso_seconds(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def run_windowed_lane(runner: MappingRunner, lane: Lane) -> None:
    length = float(runner.mapping.tumbling_window or 0)
    clock = runner.dispatcher.clock

    def window_of(record: Record) -> float:
        return math.floor(record.timestamp / length) * length

    batcher = runner.batcher(lane, boundary=window_of)
    source = runner.source
    arn = source.event_source_arn if isinstance(source, ArnSource) else lambda _lane: ""
    current: Window | None = None
    held: list[Outcome] = []
    failures = 0

    async def dispatch(records: list[Record], window: Window) -> Outcome:
        # shielded: stopping cancels this loop, never an invocation in flight (stop() waits for those)
        task = runner._start(_dispatch(runner, records, window, held), runner._in_flight)
        await asyncio.shield(task)
        return held[-1]

    async def close(window: Window) -> None:
        window.final = True
        outcome = await dispatch([], window)
        if outcome.failed:
            return  # stopping: the window's records stay unsettled and are aggregated again after a restart
        settled = Outcome(
            succeeded=tuple(r for o in held for r in o.succeeded),
            given_up=tuple(r for o in held for r in o.given_up),
        )
        held.clear()
        await runner._settle(lane, settled)

    while not runner.stopping.is_set():
        until = None if current is None else time.monotonic() + max(0.0, current.end - clock.time())
        try:
            records = await batcher.next(until)
        except LaneEnded:
            return
        except Exception as exc:
            failures += 1
            await runner.read_failed(lane, exc, failures)
            continue
        failures = runner.read_recovered(lane, failures)
        if current is not None and (not records or window_of(records[0]) != current.start):
            await close(current)
            current = None
        if not records:
            continue
        if current is None:
            start = window_of(records[0])
            current = Window(start, start + length, lane.key, arn(lane.key))
        outcome = await dispatch(records, current)
        if outcome.failed:
            return
        if len(json.dumps(current.state, default=str)) > MAX_STATE:
            current.terminated_early = True
            await close(current)
            current = None


async def _dispatch(runner: MappingRunner, records: list[Record], window: Window, held: list[Outcome]) -> None:
    held.append(await runner.dispatcher.dispatch(records, window))
