"""The `kinesis` connector against moto_server: in-process (reading, settling, checkpoints, resharding, iterator
trouble) and end to end with the hub as a real process (order, filters, resharding, parallelization). The scenarios
every connector passes (restart, broker cut, SIGKILL...) are in tests/connectors/."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.kinesis import CONNECTOR, KinesisConfig
from connectors.shards import SHARD_END, ShardLane, StreamSource
from hub.checkpoints import MemoryStore
from hub.filtering import FilterSet
from hub.records import Outcome, Record
from hub.source import LaneEnded, SourceContext
from tests.fixtures_aws import boto, connection, create_stream, put_records
from tests.helpers import ROOT, HubProcess, read_jsonl, read_n, running, shape, wait_for

SAMPLE = json.loads((ROOT / "tests/conformance/events/kinesis-event.json").read_text())
ACCOUNT = "123456789012"  # moto's account: the ARNs it hands out carry it


def kinesis_source(url: str, stream: str, store: MemoryStore, **settings: Any) -> StreamSource:
    config = KinesisConfig.model_validate(
        {
            "type": "kinesis",
            "stream_name": stream,
            "starting_position": "TRIM_HORIZON",
            "poll_interval": "20ms",
            "shard_discovery_interval": "100ms",
            "connection": connection(url),
            **settings,
        }
    )
    context = SourceContext(mapping="orders", store=store, region="us-east-1", account_id=ACCOUNT)
    source = CONNECTOR.build(config, context)
    assert isinstance(source, StreamSource)
    return source


async def drain(lane: ShardLane, timeout: float = 5.0) -> list[Record]:
    """Read and settle a closed shard until it ends (LaneEnded)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            records = await lane.read(100, 0.2)
        except LaneEnded:
            return got
        await lane.settle(Outcome(succeeded=tuple(records)))
        got.extend(records)
    raise AssertionError(f"{lane.key} did not end")


def datas(records: Sequence[Record]) -> list[bytes]:
    return [base64.b64decode(r.payload["kinesis"]["data"]) for r in records]


# ---- in-process ----------------------------------------------------------------------------------------------


async def test_each_shard_is_read_in_order_in_the_kinesis_event_shape(moto: str) -> None:
    stream = create_stream(moto, shards=2)
    items = [
        (f"key-{i % 5}", json.dumps({"n": i, "kind": "even" if i % 2 == 0 else "odd"}).encode()) for i in range(30)
    ]
    placed = put_records(moto, stream, items)
    expected: dict[str, list[bytes]] = {}
    for (shard, _), (_, data) in zip(placed, items, strict=True):
        expected.setdefault(shard, []).append(data)
    assert len(expected) == 2, "both shards hold records"
    source = kinesis_source(moto, stream, MemoryStore())
    async with running(source) as run:
        for shard, want in expected.items():
            lane = await run.lane(shard)
            assert lane.ordered
            records = await read_n(lane, len(want))
            assert datas(records) == want
            assert [r.position for r in records] == sorted(r.position for r in records)
    record = records[0]
    payload = record.payload
    assert shape({"Records": [payload]}) == shape({"Records": SAMPLE["Records"][:1]})
    seq = payload["kinesis"]["sequenceNumber"]
    assert payload["eventID"] == f"{record.lane}:{seq}"
    assert payload["eventSourceARN"] == f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{stream}"
    assert payload["awsRegion"] == "us-east-1"
    assert payload["invokeIdentityArn"] == f"arn:aws:iam::{ACCOUNT}:role/orders"
    assert record.item_id == seq and record.position == int(seq)
    assert record.order_key == payload["kinesis"]["partitionKey"]
    assert abs(record.timestamp - time.time()) < 60
    assert payload["kinesis"]["approximateArrivalTimestamp"] == round(record.timestamp, 3)
    # filters see the decoded, parsed data under `data` and the metadata at the top level
    view = record.view()
    assert view["data"] == json.loads(datas([record])[0])
    assert FilterSet.compile([{"data": {"kind": [view["data"]["kind"]]}}]).matches(view)
    assert FilterSet.compile([{"partitionKey": [record.order_key], "awsRegion": ["us-east-1"]}]).matches(view)
    assert not FilterSet.compile([{"data": {"kind": ["neither"]}}]).matches(view)
    # the event and the on-failure batch info
    assert source.render(records, 1) == {"Records": [r.payload for r in records]}
    info = source.batch_info(records)["KinesisBatchInfo"]
    assert info["shardId"] == record.lane
    assert info["startSequenceNumber"] == records[0].item_id
    assert info["endSequenceNumber"] == records[-1].item_id
    assert info["batchSize"] == len(records)
    assert info["streamArn"] == payload["eventSourceARN"]
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")


async def test_settle_checkpoints_only_the_contiguous_settled_prefix(moto: str) -> None:
    stream = create_stream(moto)
    put_records(moto, stream, [("k", b"%d" % i) for i in range(6)])
    store = MemoryStore()
    source = kinesis_source(moto, stream, store)
    async with running(source) as run:
        lane = await run.lane()
        r = await read_n(lane, 6)

        async def checkpoint() -> str | None:
            return await store.get(source.scope, lane.key)

        await lane.settle(Outcome(succeeded=(r[2], r[3])))  # a later batch settles first: nothing moves
        assert await checkpoint() is None
        await lane.settle(Outcome(filtered=(r[0],)))
        assert await checkpoint() == r[0].item_id
        await lane.settle(Outcome(given_up=(r[1],)))
        assert await checkpoint() == r[3].item_id
        # shutdown: r[5] comes back unsettled and must not be checkpointed; r[4] succeeded
        await lane.settle(Outcome(succeeded=(r[4],), failed=(r[5],)))
        assert await checkpoint() == r[4].item_id


async def test_a_failed_record_is_read_again_and_the_lane_does_not_move_past_it(moto: str) -> None:
    stream = create_stream(moto)
    put_records(moto, stream, [("k", b"%d" % i) for i in range(5)])
    store = MemoryStore()
    source = kinesis_source(moto, stream, store)
    async with running(source) as run:
        lane = await run.lane()
        r = await read_n(lane, 5)
        await lane.settle(Outcome(succeeded=(r[0], r[1]), failed=(r[2], r[3], r[4])))
        assert await store.get(source.scope, lane.key) == r[1].item_id
        again = await read_n(lane, 3)
        assert datas(again) == [b"2", b"3", b"4"]
        await lane.settle(Outcome(succeeded=tuple(again)))
        assert await store.get(source.scope, lane.key) == r[4].item_id


async def test_trim_horizon_reads_what_is_there_and_latest_only_what_comes(moto: str) -> None:
    stream = create_stream(moto)
    put_records(moto, stream, [("k", b"old-1"), ("k", b"old-2")])
    async with running(kinesis_source(moto, stream, MemoryStore())) as run:
        assert datas(await read_n(await run.lane(), 2)) == [b"old-1", b"old-2"]
    store = MemoryStore()
    async with running(kinesis_source(moto, stream, store, starting_position="LATEST")) as run:
        lane = await run.lane()
        assert await lane.read(10, 0.2) == []
        put_records(moto, stream, [("k", b"new-1")])
        assert datas(await read_n(lane, 1)) == [b"new-1"]
    # a LATEST mapping that settled nothing still reads, after a restart, what arrived while it was down
    put_records(moto, stream, [("k", b"while-down")])
    async with running(kinesis_source(moto, stream, store, starting_position="LATEST")) as run:
        assert datas(await read_n(await run.lane(), 2)) == [b"new-1", b"while-down"]


async def test_at_timestamp_starts_at_the_first_record_after_it(moto: str) -> None:
    stream = create_stream(moto)
    put_records(moto, stream, [("k", b"before")])
    await asyncio.sleep(0.05)  # apart from the record before, on the server's clock
    since = time.time()
    await asyncio.sleep(0.05)
    put_records(moto, stream, [("k", b"after")])
    source = kinesis_source(
        moto, stream, MemoryStore(), starting_position="AT_TIMESTAMP", starting_position_timestamp=since
    )
    async with running(source) as run:
        lane = await run.lane()
        assert datas(await read_n(lane, 1)) == [b"after"]
        assert await lane.read(10, 0.1) == []


async def test_an_expired_iterator_is_replaced_without_loss_or_repeat(moto: str) -> None:
    from botocore.exceptions import ClientError

    stream = create_stream(moto)
    put_records(moto, stream, [("k", b"%d" % i) for i in range(4)])
    source = kinesis_source(moto, stream, MemoryStore())
    async with running(source) as run:
        lane = await run.lane()
        first = await read_n(lane, 2)
        real = source.service.client.get_records  # type: ignore[attr-defined]
        calls = Counter[str]()

        async def expiring(**kwargs: Any) -> Any:
            calls["get_records"] += 1
            if calls["get_records"] == 1:
                error = {"Error": {"Code": "ExpiredIteratorException", "Message": "Iterator expired"}}
                raise ClientError(error, "GetRecords")  # type: ignore[arg-type]
            return await real(**kwargs)

        source.service.client.get_records = expiring  # type: ignore[attr-defined]
        rest = await read_n(lane, 2)
    assert datas(first + rest) == [b"0", b"1", b"2", b"3"]
    assert calls["get_records"] >= 2


async def test_throttling_raises_and_the_next_read_loses_nothing(moto: str) -> None:
    from botocore.exceptions import ClientError

    stream = create_stream(moto)
    put_records(moto, stream, [("k", b"%d" % i) for i in range(3)])
    source = kinesis_source(moto, stream, MemoryStore())
    async with running(source) as run:
        lane = await run.lane()
        first = await lane.read(1, 1.0)
        real = source.service.client.get_records  # type: ignore[attr-defined]

        async def throttled(**kwargs: Any) -> Any:
            source.service.client.get_records = real  # type: ignore[attr-defined]
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}}
            raise ClientError(error, "GetRecords")  # type: ignore[arg-type]

        source.service.client.get_records = throttled  # type: ignore[attr-defined]
        with pytest.raises(ClientError):
            await lane.read(10, 1.0)
        rest = await read_n(lane, 2)
    assert datas(first + rest) == [b"0", b"1", b"2"]


async def test_children_start_only_after_the_split_parent_is_finished(moto_resharding: str) -> None:
    url = moto_resharding
    stream = create_stream(url)
    kinesis = boto(url, "kinesis")
    put_records(url, stream, [(f"k{i}", b"parent-%d" % i) for i in range(6)])
    kinesis.split_shard(StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    after = put_records(url, stream, [(f"k{i}", b"child-%d" % i) for i in range(12)])
    children = {shard for shard, _ in after}
    assert children <= {"shardId-000000000001", "shardId-000000000002"}
    store = MemoryStore()
    source = kinesis_source(url, stream, store)
    async with running(source) as run:
        parent = await run.lane("shardId-000000000000")
        records = await read_n(parent, 6)
        assert await parent.read(10, 0.2) == []  # read to its end, but not settled yet
        await asyncio.sleep(0.3)  # several discovery rounds
        assert list(run.lanes) == ["shardId-000000000000"], "no child starts while its parent is unsettled"
        await parent.settle(Outcome(succeeded=tuple(records[:5])))
        await asyncio.sleep(0.3)
        assert list(run.lanes) == ["shardId-000000000000"]
        await parent.settle(Outcome(succeeded=(records[5],)))
        assert await store.get(source.scope, parent.key) == SHARD_END
        got = datas(records)
        for child in sorted(children):
            lane = await run.lane(child)
            want = sum(1 for shard, _ in after if shard == child)
            child_records = await read_n(lane, want)
            await lane.settle(Outcome(succeeded=tuple(child_records)))
            got += datas(child_records)
        assert run.order[0] == "shardId-000000000000"
    assert sorted(got) == sorted([b"parent-%d" % i for i in range(6)] + [b"child-%d" % i for i in range(12)])
    # after a restart the finished parent is not read again; the children resume after their checkpoints
    put_records(url, stream, [("k0", b"later")])
    async with running(kinesis_source(url, stream, store)) as run:
        lanes = [await run.lane(child) for child in sorted(children)]
        later = [r for lane in lanes for r in await lane.read(10, 0.3)]
        assert datas(later) == [b"later"]
        assert "shardId-000000000000" not in run.lanes


async def test_a_merged_child_waits_for_both_parents(moto_resharding: str) -> None:
    url = moto_resharding
    stream = create_stream(url, shards=2)
    put_records(url, stream, [(f"k{i}", b"before-%d" % i) for i in range(8)])
    boto(url, "kinesis").merge_shards(
        StreamName=stream, ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000001"
    )
    put_records(url, stream, [(f"k{i}", b"after-%d" % i) for i in range(4)])
    source = kinesis_source(url, stream, MemoryStore())
    async with running(source) as run:
        first, second = await run.lane("shardId-000000000000"), await run.lane("shardId-000000000001")
        a = await drain(first)
        await asyncio.sleep(0.3)
        assert "shardId-000000000002" not in run.lanes, "the child waits for its second parent"
        b = await drain(second)
        child = await run.lane("shardId-000000000002")
        c = await read_n(child, 4)
    assert sorted(datas(a + b)) == sorted(b"before-%d" % i for i in range(8))
    assert datas(c) == [b"after-%d" % i for i in range(4)]


def test_config_wants_one_stream_and_a_timestamp_only_with_at_timestamp() -> None:
    base = {"type": "kinesis", "starting_position": "LATEST"}
    with pytest.raises(ValidationError, match="exactly one of stream_name and stream_arn"):
        KinesisConfig.model_validate(base)
    with pytest.raises(ValidationError, match="starting_position_timestamp"):
        KinesisConfig.model_validate({**base, "stream_name": "s", "starting_position": "AT_TIMESTAMP"})
    with pytest.raises(ValidationError):
        KinesisConfig.model_validate({**base, "stream_name": "s", "shard_count": 2})
    ok = KinesisConfig.model_validate({**base, "stream_arn": "arn:aws:kinesis:us-east-1:1:stream/s"})
    assert ok.poll_interval == 0.1


# ---- end to end ----------------------------------------------------------------------------------------------


def hub_config(tmp: Path, url: str, stream: str, handler: str = "record", **mapping: Any) -> dict[str, Any]:
    source = {
        "type": "kinesis",
        "stream_name": stream,
        "starting_position": "TRIM_HORIZON",
        "poll_interval": "20ms",
        "connection": connection(url),
    }
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": f"functions.recorder.{handler}", "timeout": "10s"}},
        "mappings": [{"name": "orders", "function": "fn", "source": source, **mapping}],
    }


def delivered(out: Path) -> list[dict[str, Any]]:
    return [r for call in read_jsonl(out) for r in call["event"]["Records"]]


def by_shard(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in records:
        out.setdefault(r["eventID"].split(":")[0], []).append(json.loads(base64.b64decode(r["kinesis"]["data"]))["n"])
    return out


def test_the_hub_delivers_every_record_in_shard_order_and_filters(tmp_path: Path, moto: str) -> None:
    stream = create_stream(moto, shards=2)
    out = tmp_path / "calls.jsonl"
    config = hub_config(tmp_path, moto, stream, batch_size=7, filter_criteria=[{"data": {"keep": [True]}}])
    items = [(f"p{i % 4}", json.dumps({"n": i, "keep": i % 5 != 0}).encode()) for i in range(60)]
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        placed = put_records(moto, stream, items)
        kept = [i for i in range(60) if i % 5 != 0]
        wait_for(lambda: len(delivered(out)) >= len(kept), what="every kept record")
        assert hub.stop() == 0
    records = delivered(out)
    assert sorted(json.loads(base64.b64decode(r["kinesis"]["data"]))["n"] for r in records) == kept
    want: dict[str, list[int]] = {}
    for i, (shard, _) in enumerate(placed):
        if i % 5:
            want.setdefault(shard, []).append(i)
    assert by_shard(records) == want
    assert all(len(call["event"]["Records"]) <= 7 for call in read_jsonl(out))
    # the filtered records were settled too: a restart delivers nothing again
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("reading shard")
        put_records(moto, stream, [("p0", json.dumps({"n": 99, "keep": True}).encode())])
        wait_for(lambda: len(delivered(out)) > len(kept), what="the new record")
        assert hub.stop() == 0
    assert len(delivered(out)) == len(kept) + 1


def test_the_hub_reads_children_after_a_split_parent_and_loses_nothing(
    tmp_path: Path,
    moto_resharding: str,
) -> None:
    url = moto_resharding
    stream = create_stream(url)
    out = tmp_path / "calls.jsonl"
    config = hub_config(tmp_path, url, stream, batch_size=5)
    config["mappings"][0]["source"]["shard_discovery_interval"] = "100ms"
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        put_records(url, stream, [(f"p{i % 6}", json.dumps({"n": i}).encode()) for i in range(20)])
        wait_for(lambda: len(delivered(out)) >= 20, what="the parent's records")
        boto(url, "kinesis").split_shard(
            StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127)
        )
        put_records(url, stream, [(f"p{i % 6}", json.dumps({"n": i}).encode()) for i in range(20, 50)])
        wait_for(lambda: len(delivered(out)) >= 50, what="the children's records")
        hub.wait_log("shard finished")
        assert hub.stop() == 0
    records = delivered(out)
    shards = by_shard(records)
    assert shards.pop("shardId-000000000000") == list(range(20))
    assert sorted(n for numbers in shards.values() for n in numbers) == list(range(20, 50))
    assert all(numbers == sorted(numbers) for numbers in shards.values())
    assert set(shards) <= {"shardId-000000000001", "shardId-000000000002"}


def test_parallelization_keeps_order_per_partition_key_and_checkpoints_the_end(
    tmp_path: Path,
    moto: str,
) -> None:
    stream = create_stream(moto)
    out = tmp_path / "calls.jsonl"
    config = hub_config(tmp_path, moto, stream, handler="slow", batch_size=3, parallelization_factor=3)
    env = {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.01"}
    items = [(f"p{i % 5}", json.dumps({"n": i}).encode()) for i in range(60)]
    with HubProcess(tmp_path, config, env) as hub:
        hub.start()
        put_records(moto, stream, items)
        wait_for(lambda: len(delivered(out)) >= 60, what="every record")
        assert hub.stop() == 0
    per_key: dict[str, list[int]] = {}
    for r in delivered(out):
        per_key.setdefault(r["kinesis"]["partitionKey"], []).append(
            json.loads(base64.b64decode(r["kinesis"]["data"]))["n"]
        )
    assert per_key == {f"p{k}": list(range(k, 60, 5)) for k in range(5)}
    with HubProcess(tmp_path, config, env) as hub:  # batches settled out of order, yet the checkpoint is the end
        hub.start()
        hub.wait_log("reading shard")
        put_records(moto, stream, [("p0", json.dumps({"n": 60}).encode())])
        wait_for(lambda: len(delivered(out)) > 60, what="the new record")
        assert hub.stop() == 0
    assert len(delivered(out)) == 61
