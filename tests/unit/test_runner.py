"""The mapping loop over the `memory` connector's stream (pure engine logic; the connectors' own tests use brokers):
per-key order with parallelization_factor, tumbling windows, settling and a graceful stop."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors import memory
from hub.checkpoints import MemoryStore
from hub.config import FunctionConfig, config_model
from hub.dispatch import Counters, Dispatcher
from hub.functions import Function
from hub.mapping import MappingRunner
from hub.source import SourceContext, SystemClock
from tests.helpers import read_jsonl

_running: set[asyncio.Task[None]] = set()


class Stream:
    """A fresh memory stream of one lane, and the checkpoint store its mapping writes to."""

    def __init__(self) -> None:
        self.name = f"runner-{uuid.uuid4().hex[:8]}"
        self.lane = f"{self.name}-0"
        self.store = MemoryStore()
        self.total = 0
        memory.create(self.name)

    def put(self, n: int, key: str, sent: float = 1_000_000.0) -> None:
        memory.put(self.name, {"n": n}, key=key, sent=sent)
        self.total += 1

    async def checkpoint(self) -> int | None:
        """The next offset the lane reads after a restart: everything before it settled."""
        value = await self.store.get(f"m/memory/{self.name}", self.lane)
        return None if value is None else int(value)

    async def drained(self, timeout: float = 20.0) -> None:
        """Wait until every record put is settled (the checkpoint is past the last one)."""
        async with asyncio.timeout(timeout):
            while await self.checkpoint() != self.total:
                await asyncio.sleep(0.01)


async def run(stream: Stream, handler: str, **settings: Any) -> MappingRunner:
    raw = {"name": "m", "function": "f", "source": {"type": "memory", "name": stream.name}, "retry_delay": "1ms"}
    mapping = (
        config_model(("memory",))
        .model_validate({"functions": {"f": {"handler": handler}}, "mappings": [{**raw, **settings}]})
        .mappings[0]
    )
    context = SourceContext(mapping="m", store=stream.store, region="us-east-1", account_id="000000000000")
    source = mapping.spec.build(mapping.source, context)
    fn = Function(
        "f", FunctionConfig(runtime="in-process", handler=handler), region="us-east-1", account_id="000000000000"
    )
    await fn.start()
    counters = Counters()
    dispatcher = Dispatcher(mapping, fn, source, None, SystemClock(), asyncio.Event(), counters)
    runner = MappingRunner(mapping, source, dispatcher, counters, max_in_flight=1)
    task = asyncio.ensure_future(runner.run())
    _running.add(task)
    task.add_done_callback(_running.discard)
    return runner


async def test_parallelization_keeps_order_per_partition_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "calls.jsonl"
    monkeypatch.setenv("RECORDER_OUT", str(out))
    stream = Stream()
    for i in range(80):
        stream.put(i, f"k{i % 4}")
    runner = await run(stream, "functions.recorder.slow", parallelization_factor=4, batch_size=5)
    monkeypatch.setenv("SLOW_SECONDS", "0.01")
    await stream.drained()
    await runner.stop(5)
    seen: dict[str, list[int]] = {}
    for call in read_jsonl(out):
        for r in call["event"]["Records"]:
            seen.setdefault(r["partitionKey"], []).append(r["data"]["n"])
    assert {k: v for k, v in seen.items()} == {f"k{j}": list(range(j, 80, 4)) for j in range(4)}
    assert await stream.checkpoint() == 80  # the next offset: record 79 and all before it settled


async def test_a_sub_lane_dispatches_a_faulted_batch_again_before_later_records_of_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dispatch that raises (a fault of the hub, not of the function) leaves its records unsettled: the sub-lane
    dispatches them again itself, ahead of the later records of the same keys already queued behind them."""
    out = tmp_path / "calls.jsonl"
    monkeypatch.setenv("RECORDER_OUT", str(out))
    monkeypatch.setenv("SLOW_SECONDS", "0.01")
    dispatch = Dispatcher.dispatch
    faults = []

    async def faulty(self: Dispatcher, records: Any, envelope: Any = None) -> Any:
        if not faults:
            faults.append([r.position for r in records])
            raise RuntimeError("a fault of the hub")
        return await dispatch(self, records, envelope)

    monkeypatch.setattr(Dispatcher, "dispatch", faulty)
    stream = Stream()
    for i in range(80):
        stream.put(i, f"k{i % 4}")
    runner = await run(stream, "functions.recorder.slow", parallelization_factor=4, batch_size=5)
    await stream.drained()
    await runner.stop(5)
    assert faults, "no dispatch faulted"
    seen: dict[str, list[int]] = {}
    for call in read_jsonl(out):
        for r in call["event"]["Records"]:
            seen.setdefault(r["partitionKey"], []).append(r["data"]["n"])
    assert seen == {f"k{j}": list(range(j, 80, 4)) for j in range(4)}
    assert await stream.checkpoint() == 80


async def test_tumbling_window_carries_state_and_checkpoints_at_the_final_invoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "calls.jsonl"
    monkeypatch.setenv("RECORDER_OUT", str(out))
    # two windows of 60 s: records 0-5 in the first, 6-9 in the second (arrival times in the past, so both end)
    base = 1_000_020.0 - 1_000_020.0 % 60
    stream = Stream()
    for i in range(10):
        stream.put(i, "k", base + i if i < 6 else base + 60 + i)
    runner = await run(stream, "functions.testing.window_sum", tumbling_window=60, batch_size=4)
    await stream.drained()
    await runner.stop(5)
    calls = read_jsonl(out)
    first = [c for c in calls if c["window"]["start"] == "1970-01-12T13:47:00Z"]
    assert [c["records"] for c in first] == [[0, 1, 2, 3], [4, 5], []]
    assert first[-1]["isFinalInvokeForWindow"] is True
    assert first[-1]["state"] == {"sum": 15, "count": 6}
    assert first[0]["state"] == {}
    assert {c["shardId"] for c in calls} == {stream.lane}
    second = [c for c in calls if c["window"]["start"] != "1970-01-12T13:47:00Z"]
    assert second[0]["state"] == {}  # a new window starts with fresh state
    assert second[-1]["isFinalInvokeForWindow"] is True
    assert second[-1]["state"] == {"sum": 30, "count": 4}
    assert await stream.checkpoint() == 10
    assert json.dumps(calls)  # every call recorded cleanly


async def test_window_without_state_in_the_response_is_a_failure(tmp_path: Path) -> None:
    base = 1_000_020.0 - 1_000_020.0 % 60
    stream = Stream()
    stream.put(0, "k", base)
    runner = await run(stream, "functions.recorder.noop", tumbling_window=60, maximum_retry_attempts=0)
    await stream.drained()
    await runner.stop(5)
    assert runner.counters.failed_invoke >= 1
    assert runner.counters.dropped == 1
