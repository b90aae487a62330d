"""Tumbling windows (`tumbling_window` on Kinesis and DynamoDB Streams mappings), as AWS runs them: a lane runner.

Windows are aligned to multiples of the window length in record arrival time, per lane. Every invocation of a
window gets the state the previous one returned ({} at first) and must return `{"state": ...}`. When the
window's end passes (or a record of a later window arrives), a final invocation with no records and
`isFinalInvokeForWindow: true` closes it; only then are the window's records checkpointed, so a hub that stops
mid-window aggregates that window again from its first record. A state over 1 MB ends the window early.

A `Window` is the envelope of its invocations (hub.invocation.Envelope): it adds its fields to the event and
takes the state from the function's answer, so that the dispatcher needs to know nothing of windows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.lanes import LaneWork
from hub.records import Outcome, Record
from hub.runtimes import Result, error_payload
from hub.source import ArnSource, Lane, LaneEnded

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
    may_bisect = False
    """A window's records are never split: its state runs through them in order."""

    def wrap(self, event: Any) -> dict[str, Any]:
        """The source's event with the window's fields, as AWS adds them."""
        return {
            **event,
            "window": {"start": iso_seconds(self.start), "end": iso_seconds(self.end)},
            "state": self.state,
            "shardId": self.shard_id,
            "eventSourceARN": self.source_arn,
            "isFinalInvokeForWindow": self.final,
            "isWindowTerminatedEarly": self.terminated_early,
        }

    def answer(self, result: Result) -> Result:
        """Keep the state the function returned; an answer without `state` is a failed invocation."""
        if isinstance(result.payload, dict) and "state" in result.payload:
            self.state = result.payload["state"]
            return result
        return Result(
            False,
            error_payload("InvalidWindowResponse", 'a tumbling-window function must return {"state": ...}'),
            result.duration,
            result.request_id,
            "Unhandled",
        )


def iso_seconds(ts: float) -> str:
    """Epoch seconds as AWS writes a window's bounds: `2024-01-01T00:00:00Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def run_windowed_lane(work: LaneWork, lane: Lane) -> None:
    """Run an ordered lane in tumbling windows: batches never cross a window's bounds, every batch is invoked with
    the window's state, and the window's records settle together after its final invocation."""
    length = float(work.mapping.tumbling_window or 0)
    clock = work.clock
    source = work.source
    arn = source.event_source_arn(lane.key) if isinstance(source, ArnSource) else ""

    def window_of(record: Record) -> float:
        return math.floor(record.timestamp / length) * length

    batcher = work.batcher(lane, boundary=window_of)
    current: Window | None = None
    held: list[Outcome] = []
    failures = 0

    async def dispatch(records: list[Record], window: Window) -> Outcome:
        outcome = await work.dispatch(records, window)
        held.append(outcome)
        return outcome

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
        await work.settle(lane, settled)

    while not work.stopping.is_set():
        until = None if current is None else time.monotonic() + max(0.0, current.end - clock.time())
        try:
            records = await batcher.next(until)
        except LaneEnded:
            return
        except Exception as exc:
            failures += 1
            await work.read_failed(lane, exc, failures)
            continue
        failures = work.read_recovered(lane, failures)
        if current is not None and (not records or window_of(records[0]) != current.start):
            await close(current)
            current = None
        if not records:
            continue
        if current is None:
            start = window_of(records[0])
            current = Window(start, start + length, lane.key, arn)
        outcome = await dispatch(records, current)
        if outcome.failed:
            return
        if len(json.dumps(current.state, default=str)) > MAX_STATE:
            current.terminated_early = True
            await close(current)
            current = None
