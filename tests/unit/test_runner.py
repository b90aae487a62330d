"""The mapping loop over an in-memory stream source (pure engine logic; the connectors' own tests use brokers):
per-key order with parallelization_factor, tumbling windows, settling and a graceful stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from hub import registry
from hub.config import FunctionConfig, config_model
from hub.dispatch import Counters, Dispatcher
from hub.functions import Function
from hub.mapping import MappingRunner
from hub.records import ContiguousTracker, Outcome, Record
from hub.source import ConnectorSpec, SystemClock
from tests.helpers import read_jsonl


class MemoryStream:
    """One ordered lane over a fixed list of records; settle keeps the contiguous checkpoint."""

    key = "shard-0"
    ordered = True

    def __init__(self, records: list[Record]) -> None:
        self.pending = list(records)
        self.tracker = ContiguousTracker()
        self.checkpoint: Any = None
        self.settled: list[Any] = []
        self.drained = asyncio.Event()
        self.total = len(records)

    async def open(self) -> None:
        pass

    async def lanes(self) -> AsyncIterator[MemoryStream]:
        yield self
        await asyncio.Event().wait()

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        if not self.pending:
            if timeout is None:
                await asyncio.Event().wait()
            await asyncio.sleep(timeout or 0)
            return []
        out, self.pending = self.pending[:limit], self.pending[limit:]
        self.tracker.track(r.position for r in out)
        return out

    async def settle(self, outcome: Outcome) -> None:
        self.settled.extend(r.position for r in outcome.settled)
        self.tracker.done(r.position for r in outcome.settled)
        if (newest := self.tracker.advance()) is not None:
            self.checkpoint = newest
        if len(self.settled) >= self.total:
            self.drained.set()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        return {"Records": [r.payload for r in records]}

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        return {"MemoryBatchInfo": {"batchSize": len(records)}}

    async def close(self) -> None:
        pass


class MemoryStreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["memory-stream"]


registry.register(ConnectorSpec("memory-stream", MemoryStreamConfig, lambda c, x: None, "stream", "", dict))  # type: ignore[arg-type, return-value]


async def run(source: MemoryStream, handler: str, **settings: Any) -> MappingRunner:
    raw = {"function": "f", "source": {"type": "memory-stream"}, "retry_delay": "1ms", **settings}
    mapping = (
        config_model(("memory-stream",))
        .model_validate({"functions": {"f": {"handler": handler}}, "mappings": [raw]})
        .mappings[0]
    )
    fn = Function(
        "f", FunctionConfig(runtime="in-process", handler=handler), region="us-east-1", account_id="000000000000"
    )
    await fn.start()
    counters = Counters()
    dispatcher = Dispatcher(mapping, fn, source, None, SystemClock(), asyncio.Event(), counters)  # type: ignore[arg-type]
    runner = MappingRunner(mapping, source, dispatcher, counters, max_in_flight=1)  # type: ignore[arg-type]
    runner._main = asyncio.ensure_future(runner.run())
    return runner


def rec(i: int, key: str, ts: float = 1_000_000.0) -> Record:
    return Record("shard-0", i, {"n": i, "key": key}, timestamp=ts, order_key=key, item_id=str(i))


async def test_parallelization_keeps_order_per_partition_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "calls.jsonl"
    monkeypatch.setenv("RECORDER_OUT", str(out))
    records = [rec(i, f"k{i % 4}") for i in range(80)]
    source = MemoryStream(records)
    runner = await run(source, "functions.recorder.slow", parallelization_factor=4, batch_size=5)
    monkeypatch.setenv("SLOW_SECONDS", "0.01")
    await asyncio.wait_for(source.drained.wait(), 20)
    await runner.stop(5)
    seen: dict[str, list[int]] = {}
    for call in read_jsonl(out):
        for r in call["event"]["Records"]:
            seen.setdefault(r["key"], []).append(r["n"])
    assert {k: v for k, v in seen.items()} == {f"k{j}": list(range(j, 80, 4)) for j in range(4)}
    assert source.checkpoint == 79


async def test_tumbling_window_carries_state_and_checkpoints_at_the_final_invoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "calls.jsonl"
    monkeypatch.setenv("RECORDER_OUT", str(out))
    # two windows of 60 s: records 0-5 in the first, 6-9 in the second (arrival times in the past, so both end)
    base = 1_000_020.0 - 1_000_020.0 % 60
    records = [rec(i, "k", base + i) for i in range(6)] + [rec(i, "k", base + 60 + i) for i in range(6, 10)]
    source = MemoryStream(records)
    runner = await run(source, "functions.testing.window_sum", tumbling_window=60, batch_size=4)
    await asyncio.wait_for(source.drained.wait(), 20)
    await runner.stop(5)
    calls = read_jsonl(out)
    first = [c for c in calls if c["window"]["start"] == "1970-01-12T13:47:00Z"]
    assert [c["records"] for c in first] == [[0, 1, 2, 3], [4, 5], []]
    assert first[-1]["isFinalInvokeForWindow"] is True
    assert first[-1]["state"] == {"sum": 15, "count": 6}
    assert first[0]["state"] == {}
    assert {c["shardId"] for c in calls} == {"shard-0"}
    second = [c for c in calls if c["window"]["start"] != "1970-01-12T13:47:00Z"]
    assert second[0]["state"] == {}  # a new window starts with fresh state
    assert second[-1]["isFinalInvokeForWindow"] is True
    assert second[-1]["state"] == {"sum": 30, "count": 4}
    assert source.checkpoint == 9
    assert json.dumps(calls)  # every call recorded cleanly


async def test_window_without_state_in_the_response_is_a_failure(tmp_path: Path) -> None:
    base = 1_000_020.0 - 1_000_020.0 % 60
    source = MemoryStream([rec(0, "k", base)])
    runner = await run(source, "functions.recorder.noop", tumbling_window=60, maximum_retry_attempts=0)
    await asyncio.wait_for(source.drained.wait(), 20)
    await runner.stop(5)
    assert runner.counters.failed_invoke >= 1
    assert runner.counters.dropped == 1
