"""Shards shared by two hubs through leases, in one process: two shard readers, each with its own coordinator, on
one shared store, against a real Kinesis API (moto_server, made to reshard as AWS does). A child shard starts only
once every parent is finished, whichever hub read the parents; a revoked shard is handed over only once what was
read from it has settled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from connectors.kinesis import CONNECTOR, KinesisConfig
from connectors.shards import SHARD_END, StreamSource
from hub.checkpoints import MemoryStore
from hub.leases import Coordinator
from hub.records import Outcome
from hub.source import LaneEnded, SourceContext
from tests.fixtures_aws import boto, connection, create_stream, put_records
from tests.helpers import RunningSource, read_n
from tests.integration.test_kinesis import ACCOUNT, datas, drain


@contextlib.asynccontextmanager
async def hub(store: MemoryStore, url: str, stream: str, name: str) -> AsyncIterator[tuple[Coordinator, Any]]:
    """A coordinator (failover 1 s) and the `orders` mapping's shard reader it leases shards to, running."""
    leases = Coordinator(store, ["orders"], failover_time=1.0, member=name)
    await leases.start()
    config = KinesisConfig.model_validate(
        {
            "type": "kinesis",
            "stream_name": stream,
            "starting_position": "TRIM_HORIZON",
            "poll_interval": "20ms",
            "shard_discovery_interval": "100ms",
            "connection": connection(url),
        }
    )
    context = SourceContext(mapping="orders", store=store, region="us-east-1", account_id=ACCOUNT, leases=leases)
    source = CONNECTOR.build(config, context)
    assert isinstance(source, StreamSource)
    await source.open()
    run = RunningSource(source)
    task = asyncio.create_task(run.collect())
    try:
        yield leases, run
    finally:
        await source.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await leases.stop()


async def eventually(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def shards(leases: Coordinator) -> set[str]:
    return {lease.rsplit("/", 1)[1] for lease in leases.held("orders")}


async def test_a_shard_moves_to_a_joining_hub_only_once_its_batch_settled(moto: str) -> None:
    stream = create_stream(moto, shards=2)
    placed = put_records(moto, stream, [(f"k{i}", b"r-%d" % i) for i in range(40)])
    store = MemoryStore(shared=True)
    async with hub(store, moto, stream, "a") as (a, run_a):
        await eventually(lambda: len(shards(a)) == 2, "a to hold both shards")
        lanes = {key: await run_a.lane(key) for key in shards(a)}
        batches = {key: await lane.read(5, 2.0) for key, lane in lanes.items()}  # in flight, not settled
        async with hub(store, moto, stream, "b") as (b, run_b):
            await eventually(lambda: any(lease.revoked for lease in a.held("orders").values()), "a revocation")
            (moving,) = [k for k in shards(a) if a.held("orders")[f"{run_a.source.scope}/{k}"].revoked]
            await asyncio.sleep(0.5)  # several ticks: the lease stays with a while its batch is in flight
            assert moving in shards(a) and moving not in shards(b)
            for key, lane in lanes.items():
                await lane.settle(Outcome(succeeded=tuple(batches[key])))
            with pytest.raises(LaneEnded):  # the mapping's next read of the lane: it ends, and hands over
                await lanes[moving].read(5, 2.0)
            await eventually(lambda: moving in shards(b) and moving not in shards(a), "the handover")
            lane = await run_b.lane(moving)
            left = sum(1 for shard, _ in placed if shard == moving) - len(batches[moving])
            rest = await read_n(lane, left)
    # b went on after a's checkpoint: nothing twice, nothing skipped
    assert datas(batches[moving] + rest) == [b"r-%d" % i for i, (shard, _) in enumerate(placed) if shard == moving]


async def test_a_merged_child_waits_for_parents_read_by_two_hubs(moto_resharding: str) -> None:
    url = moto_resharding
    stream = create_stream(url, shards=2)
    put_records(url, stream, [(f"k{i}", b"before-%d" % i) for i in range(8)])
    boto(url, "kinesis").merge_shards(
        StreamName=stream, ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000001"
    )
    put_records(url, stream, [(f"k{i}", b"after-%d" % i) for i in range(4)])
    store = MemoryStore(shared=True)
    async with hub(store, url, stream, "a") as (a, run_a), hub(store, url, stream, "b") as (b, run_b):
        parents = {"shardId-000000000000", "shardId-000000000001"}

        def spread() -> bool:
            mine = {lease.rsplit("/", 1)[1] for lease in a.held("orders")}
            theirs = {lease.rsplit("/", 1)[1] for lease in b.held("orders")}
            return not mine & theirs and len(mine & parents) == 1 and len(theirs & parents) == 1

        await eventually(spread, "each hub to hold one parent")
        runs = {run.source: run for run in (run_a, run_b)}
        lanes = {}
        for run in runs.values():
            for key in parents:
                if key in {lease.rsplit("/", 1)[1] for lease in run.source.leases.held("orders")}:
                    lanes[key] = await run.lane(key)
        first = await drain(lanes["shardId-000000000000"])
        await asyncio.sleep(0.5)  # discovery rounds on both hubs
        assert "shardId-000000000002" not in run_a.lanes and "shardId-000000000002" not in run_b.lanes
        second = await drain(lanes["shardId-000000000001"])
        scope = run_a.source.scope
        assert await store.get(scope, "shardId-000000000000") == SHARD_END
        assert await store.get(scope, "shardId-000000000001") == SHARD_END

        async def child() -> Any:
            for _ in range(300):
                for run in (run_a, run_b):
                    if "shardId-000000000002" in run.lanes:
                        return run.lanes["shardId-000000000002"]
                await asyncio.sleep(0.02)
            raise AssertionError("the child never started")

        lane = await child()
        records = await read_n(lane, 4)
        await lane.settle(Outcome(succeeded=tuple(records)))
    assert sorted(datas(first + second)) == sorted(b"before-%d" % i for i in range(8))
    assert datas(records) == [b"after-%d" % i for i in range(4)]
