"""The scenarios every connector passes, written once and run for each connector's kit (tests/connectors/conftest.py)
that supports them: open and close twice; read and settle; redelivery after a failure; a restart resumes from the
checkpoint; the broker cut and restored; a hub process SIGKILLed mid-stream loses nothing.

Records are numbered 0, 1, 2...; each kit puts them into a fresh resource of its broker and reads the numbers back
from the events its source renders, so every check is about numbers: each delivered, none settled delivered again,
in order per lane where the connector keeps order.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from hub.checkpoints import MemoryStore
from hub.records import Outcome, Record
from tests.connectors.kit import InProcessMapping, Kit, Resource, build, by_lane, eventually, numbered, settle, take
from tests.helpers import HubProcess, read_jsonl, running, wait_for


async def produce(kit: Kit, resource: Resource, numbers: Iterable[int]) -> None:
    await asyncio.to_thread(kit.produce, resource, list(numbers))


async def fresh(kit: Kit, cuttable: bool = False) -> tuple[Resource, MemoryStore]:
    """A fresh resource, and the checkpoint store its sources share (across restarts)."""
    return await asyncio.to_thread(kit.fresh, cuttable), MemoryStore()


def in_order(pairs: Iterable[tuple[str, int]]) -> bool:
    """Whether the numbers of each lane rise (a stream delivers each lane in the order it was produced)."""
    last: dict[str, int] = {}
    for lane, n in pairs:
        if n <= last.get(lane, -1):
            return False
        last[lane] = n
    return True


async def nothing_held(kit: Kit, resource: Resource, timeout: float = 10.0) -> None:
    """Wait until the broker holds nothing unsettled of the resource (queues: every message deleted or acked)."""
    deadline = time.monotonic() + timeout
    while held := await asyncio.to_thread(kit.leftover, resource):
        if time.monotonic() > deadline:
            raise AssertionError(f"the broker still holds {held} unsettled records after {timeout}s")
        await asyncio.sleep(0.05)


async def nothing_more(kit: Kit, resource: Resource, store: MemoryStore, marker: int) -> None:
    """A new source reads only a record produced now: nothing settled comes back. The broker keeps nothing."""
    await produce(kit, resource, [marker])
    source = build(kit, resource, store)
    async with running(source) as run:
        records = await take(run, 1)
        assert [n for _, n in numbered(kit, source, records)] == [marker]
        await settle(run, records)
        await nothing_held(kit, resource)


async def test_open_and_close_twice(kit: Kit) -> None:
    resource, store = await fresh(kit)
    source = build(kit, resource, store)
    await source.open()
    await source.close()
    await source.close()
    await produce(kit, resource, [0])
    async with running(source) as run:  # the same source opens again, and closes twice at the end
        records = await take(run, 1)
        assert [n for _, n in numbered(kit, source, records)] == [0]
        await settle(run, records)


async def test_read_and_settle(kit: Kit) -> None:
    resource, store = await fresh(kit)
    await produce(kit, resource, range(8))
    source = build(kit, resource, store)
    async with running(source) as run:
        records = await take(run, 8)
        pairs = numbered(kit, source, records)
        assert sorted(n for _, n in pairs) == list(range(8))
        assert len({lane for lane, _ in pairs}) <= kit.lanes
        if kit.ordered:
            assert in_order(pairs), pairs
        await settle(run, records)
    await nothing_more(kit, resource, store, 8)


@pytest.mark.needs("redelivers")
async def test_redelivery_after_a_failure(kit: Kit) -> None:
    """A queue delivers a failed record again; a stream reads again from the failed record, in order."""
    resource, store = await fresh(kit)
    await produce(kit, resource, range(6))
    source = build(kit, resource, store)
    failed: list[Record] = []
    async with running(source) as run:
        for key, records in by_lane(await take(run, 6)).items():
            half = len(records) // 2
            failed += records[half:]
            await run.lanes[key].settle(Outcome(succeeded=tuple(records[:half]), failed=tuple(records[half:])))
        expected = numbered(kit, source, failed)
        if kit.rereads_in_session:
            again = await take(run, len(failed))
            await check_again(kit, source, run, again, expected)
    if not kit.rereads_in_session:  # the failed records come back after a restart
        source = build(kit, resource, store)
        async with running(source) as run:
            await check_again(kit, source, run, await take(run, len(failed)), expected)
    await nothing_more(kit, resource, store, 6)


async def check_again(kit: Kit, source: Any, run: Any, again: list[Record], expected: list[tuple[str, int]]) -> None:
    """The records read again are exactly the failed ones (per lane in order, for a stream); then they settle."""
    pairs = numbered(kit, source, again)
    if kit.ordered:
        assert {lane: [n for l2, n in pairs if l2 == lane] for lane, _ in pairs} == {
            lane: [n for l2, n in expected if l2 == lane] for lane, _ in expected
        }
    assert sorted(n for _, n in pairs) == sorted(n for _, n in expected)
    if kit.counts_deliveries:
        assert all(record.attempt >= 2 for record in again), [record.attempt for record in again]
    await settle(run, again)


async def test_restart_resumes_from_the_checkpoint(kit: Kit) -> None:
    """Records settled before a restart are not delivered again; those read and not settled are not lost."""
    resource, store = await fresh(kit)
    await produce(kit, resource, range(8))
    source = build(kit, resource, store)
    unsettled: list[Record] = []
    async with running(source) as run:
        for key, records in by_lane(await take(run, 8)).items():
            half = len(records) // 2
            await run.lanes[key].settle(Outcome(succeeded=tuple(records[:half])))
            unsettled += records[half:]
        expected = numbered(kit, source, unsettled)
    source = build(kit, resource, store)
    async with running(source) as run:
        again = await take(run, len(unsettled))
        pairs = numbered(kit, source, again)
        assert sorted(n for _, n in pairs) == sorted(n for _, n in expected)
        if kit.counts_deliveries:  # delivered once before the restart
            assert all(record.attempt >= 2 for record in again), [record.attempt for record in again]
        if kit.ordered:
            assert in_order(pairs), pairs
        await settle(run, again)
    await nothing_more(kit, resource, store, 8)


def delivered(kit: Kit, out: Path) -> list[tuple[str, int]]:
    """(lane, number) of every record the recorder was invoked with, in the order of the invocations."""
    return [pair for entry in read_jsonl(out) for pair in kit.numbers(entry["event"])]


@pytest.mark.needs("cuttable")
async def test_broker_cut_and_restored(kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping sees the broker go (degraded or reconnecting), reconnects when it is back and loses nothing: what
    was produced while it could not read arrives; no connection trouble counts as a function failure."""
    out = tmp_path / "calls.jsonl"
    monkeypatch.setenv("RECORDER_OUT", str(out))
    resource, _ = await fresh(kit, cuttable=True)
    await produce(kit, resource, range(5))
    settings = {"batch_size": 5} if kit.batched else {}
    async with InProcessMapping(kit, resource, **settings) as runner:
        await eventually(lambda: {n for _, n in delivered(kit, out)} >= set(range(5)), 30, "the records before the cut")
        await asyncio.to_thread(kit.cut, resource)
        during = asyncio.ensure_future(produce(kit, resource, range(5, 10)))  # while the hub cannot read
        await eventually(lambda: runner.state in ("degraded", "reconnecting"), 30, "the mapping to see the cut")
        await asyncio.to_thread(kit.restore, resource)
        await during
        await eventually(lambda: {n for _, n in delivered(kit, out)} >= set(range(10)), 60, "every record")
        await eventually(lambda: runner.state == "running", 30, "the mapping to run again")
    assert runner.counters.failed_invoke == 0
    pairs = delivered(kit, out)
    if kit.ordered:  # redeliveries aside, each lane in order
        assert in_order(list(dict.fromkeys(pairs))), pairs


@pytest.mark.needs("hub_process")
def test_sigkill_mid_stream_loses_nothing(kit: Kit, tmp_path: Path) -> None:
    """A hub killed with SIGKILL mid-way and started again delivers every record; the duplicates are at most what
    was in flight at the kill; a stream keeps each lane in order within each run; the broker keeps nothing."""
    resource = kit.fresh()
    batch = kit.kill_batch if kit.batched else 1
    total = kit.kill_records or 8 * (kit.in_flight(batch) - kit.read_ahead)
    kit.produce(resource, range(total))
    out = tmp_path / "calls.jsonl"
    mapping = {"name": resource.name, "function": "fn", "source": kit.source(resource), **kit.mapping}
    config = {
        "checkpoints": f"sqlite:///{tmp_path / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": "functions.recorder.slow", "timeout": "10s"}},
        "mappings": [{**mapping, **({"batch_size": batch} if kit.batched else {})}],
    }

    def distinct() -> set[int]:
        return {n for _, n in delivered(kit, out)}

    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out), "SLOW_SECONDS": str(kit.kill_slow)}) as hub:
        hub.start()
        wait_for(lambda: len(distinct()) >= total // 4, 30, "a quarter of the records")
        hub.kill()
        first_run = len(read_jsonl(out))
        assert len(distinct()) < total, "the kill came too late to prove anything"
        hub.start()
        wait_for(lambda: len(distinct()) == total, 60, "every record after the restart")
        wait_for(lambda: kit.leftover(resource) == 0, 20, "the broker to hold nothing unsettled")
        assert hub.stop() == 0
    pairs = delivered(kit, out)
    assert sorted(set(n for _, n in pairs)) == list(range(total))
    duplicates = sum(count - 1 for count in Counter(n for _, n in pairs).values())
    assert duplicates <= kit.in_flight(batch), f"{duplicates} duplicates: more than was in flight"
    if kit.ordered:
        calls = read_jsonl(out)
        for run in (calls[:first_run], calls[first_run:]):
            assert in_order(pair for entry in run for pair in kit.numbers(entry["event"]))
