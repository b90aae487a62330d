"""The `redis` connector against a real redis-server: the source in process, then the hub as a real process. The
scenarios every connector passes (restart, broker cut, SIGKILL...) are in tests/connectors/."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from connectors.redis_streams import CONNECTOR, RedisStreamsConfig, RedisStreamsSource, StreamLane
from connectors.redis_streams.source import READ_AHEAD
from hub.checkpoints import MemoryStore
from hub.records import Outcome, Record
from hub.source import LaneEnded, SourceContext
from tests.helpers import HubProcess, read_jsonl, wait_for


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_source(url: str, stream: str | list[str], mapping: str = "m", **settings: Any) -> RedisStreamsSource:
    config = RedisStreamsConfig.model_validate({"type": "redis", "url": url, "stream": stream, **settings})
    context = SourceContext(mapping=mapping, store=MemoryStore(), region="eu-west-1", account_id="000000000000")
    return RedisStreamsSource(config, context)


async def first_lane(source: RedisStreamsSource) -> StreamLane:
    async for lane in source.lanes():
        return lane
    raise AssertionError("no lane")


async def read_n(lane: StreamLane, n: int, timeout: float = 5.0) -> list[Record]:
    """Read until n records arrived (each read bounded), failing after `timeout` seconds."""
    out: list[Record] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.extend(await lane.read(n - len(out), 0.5))
    return out


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aredis.Redis]:
    c = aredis.Redis.from_url(redis_url)
    yield c
    await c.aclose()


async def pending_ids(client: aredis.Redis, stream: str, group: str) -> list[str]:
    return [p["message_id"].decode() for p in await client.xpending_range(stream, group, "-", "+", 1000)]


# ---- the source in process -----------------------------------------------------------------------------------


async def test_read_renders_sqs_style_records_and_settle_acks(redis_url: str, client: aredis.Redis) -> None:
    stream = unique("orders")
    ids = [
        (await client.xadd(stream, {"order": "1", "payload": '{"kind":"book","qty":2}'})).decode(),
        (await client.xadd(stream, {"blob": b"\xff\x00", "note": "plain text"})).decode(),
        (await client.xadd(stream, {"city": "Zürich", b"odd\xfe": b"\xc3\xa9t\xc3\xa9", "raw": b"\x80a"})).decode(),
    ]
    source = make_source(redis_url, stream, mapping="orders-mapping")
    await source.open()
    try:
        lane = await first_lane(source)
        assert (lane.key, lane.ordered) == (stream, False)
        records = await read_n(lane, 3)
        assert [r.item_id for r in records] == ids
        assert all(r.attempt == 1 for r in records)
        event = source.render(records, 1)
        first, second, third = event["Records"]
        port = redis_url.split(":")[2].split("/")[0]
        assert first == {
            "messageId": ids[0],
            "stream": stream,
            "data": {"order": "1", "payload": '{"kind":"book","qty":2}'},
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": ids[0].split("-")[0],
                "ConsumerGroup": "orders-mapping",
                "Consumer": source.consumer,
            },
            "eventSource": "redis:stream",
            "eventSourceARN": f"redis://127.0.0.1:{port}/0/{stream}",
            "awsRegion": "eu-west-1",
        }
        assert second["data"] == {"note": "plain text"}
        assert second["binaryData"] == {"blob": "/wA="}
        # UTF-8 beyond ASCII is text; a name that is not UTF-8 shows its odd byte escaped
        assert third["data"] == {"city": "Zürich", "odd\\xfe": "été"}
        assert third["binaryData"] == {"raw": "gGE="}
        assert records[0].timestamp == int(ids[0].split("-")[0]) / 1000
        # filters see each field parsed as JSON when it is JSON
        assert source.filter_view(records[0])["data"] == {"order": 1, "payload": {"kind": "book", "qty": 2}}
        assert source.filter_view(records[0])["attributes"]["ApproximateReceiveCount"] == "1"
        assert "binaryData" not in source.filter_view(records[1])
        assert sorted(await pending_ids(client, stream, "orders-mapping")) == ids
        await lane.settle(Outcome(succeeded=(records[0], records[2]), filtered=(records[1],)))
        assert await pending_ids(client, stream, "orders-mapping") == []
        assert await client.xlen(stream) == 3  # acked, not deleted
    finally:
        await source.close()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_failed_entries_come_back_after_claim_idle_time_with_their_delivery_count(
    redis_url: str, client: aredis.Redis, protocol: int
) -> None:
    stream = unique("retry")
    entry = (await client.xadd(stream, {"n": "1"})).decode()
    url = f"{redis_url}?protocol={protocol}"
    source = make_source(url, stream, claim_idle_time="150ms", block="100ms")
    await source.open()
    try:
        lane = await first_lane(source)
        for attempt in (1, 2, 3):
            (record,) = await read_n(lane, 1)
            assert (record.item_id, record.attempt) == (entry, attempt)
            assert source.render([record], attempt)["Records"][0]["attributes"]["ApproximateReceiveCount"] == str(
                attempt
            )
            await lane.settle(Outcome(failed=(record,)))
        (record,) = await read_n(lane, 1)
        await lane.settle(Outcome(given_up=(record,)))
        assert await pending_ids(client, stream, "m") == []
        assert await lane.read(10, 0.3) == []  # nothing comes back once settled
    finally:
        await source.close()


async def test_an_entry_in_flight_is_not_delivered_twice_when_it_outlives_claim_idle_time(
    redis_url: str, client: aredis.Redis
) -> None:
    stream = unique("slow")
    await client.xadd(stream, {"n": "1"})
    source = make_source(redis_url, stream, claim_idle_time="50ms", block="50ms")
    await source.open()
    try:
        lane = await first_lane(source)
        (record,) = await read_n(lane, 1)
        assert await lane.read(10, 0.3) == []  # still in flight here: claimed, but not handed out again
        await lane.settle(Outcome(succeeded=(record,)))
    finally:
        await source.close()


async def test_own_pending_entries_are_read_first_after_a_restart(redis_url: str, client: aredis.Redis) -> None:
    stream = unique("restart")
    ids = [(await client.xadd(stream, {"n": str(i)})).decode() for i in range(3)]
    first = make_source(redis_url, stream, consumer_name="worker-1")
    await first.open()
    lane = await first_lane(first)
    records = await read_n(lane, 3)
    await lane.settle(Outcome(succeeded=(records[0],)))
    await first.close()  # the other two were read, never settled: still pending for worker-1
    new = (await client.xadd(stream, {"n": "new"})).decode()

    again = make_source(redis_url, stream, consumer_name="worker-1")  # claim_idle_time is 30s: no claiming here
    await again.open()
    try:
        lane = await first_lane(again)
        pending = await read_n(lane, 2)
        assert [(r.item_id, r.attempt) for r in pending] == [(ids[1], 2), (ids[2], 2)]
        (fresh,) = await read_n(lane, 1)
        assert (fresh.item_id, fresh.attempt) == (new, 1)
        await lane.settle(Outcome(succeeded=(*pending, fresh)))
        assert await pending_ids(client, stream, "m") == []
    finally:
        await again.close()


async def test_a_dead_consumers_entries_are_claimed_with_their_delivery_count(
    redis_url: str, client: aredis.Redis
) -> None:
    stream = unique("dead")
    ids = [(await client.xadd(stream, {"n": str(i)})).decode() for i in range(4)]
    await client.xgroup_create(stream, "m", id="0")
    await client.xreadgroup("m", "dead-consumer", {stream: ">"}, count=10)  # read, then it "died"
    source = make_source(redis_url, stream, claim_idle_time="100ms", block="50ms")
    await source.open()
    try:
        lane = await first_lane(source)
        records = await read_n(lane, 4)
        assert sorted(r.item_id for r in records) == ids
        assert {r.attempt for r in records} == {2}
        owners = {p["consumer"].decode() for p in await client.xpending_range(stream, "m", "-", "+", 10)}
        assert owners == {source.consumer}
        await lane.settle(Outcome(succeeded=tuple(records)))
    finally:
        await source.close()


async def test_reads_ahead_on_a_backlog_and_what_was_read_ahead_is_claimed_after_a_close(
    redis_url: str, client: aredis.Redis
) -> None:
    stream = unique("ahead")
    ids = [(await client.xadd(stream, {"n": str(i)})).decode() for i in range(50)]
    source = make_source(redis_url, stream, claim_idle_time="100ms", block="50ms")
    await source.open()
    try:
        lane = await first_lane(source)
        first = await lane.read(5, 0.5)
        assert [r.item_id for r in first] == ids[:5]
        # a full read sends READ_AHEAD more: handed to this consumer by Redis, not yet to the hub
        async with asyncio.timeout(5):
            while len(await pending_ids(client, stream, "m")) < 5 + 5 * READ_AHEAD:
                await asyncio.sleep(0.01)
        assert lane.in_flight == {r.position for r in first}  # what was read ahead is not in flight yet
        await lane.settle(Outcome(succeeded=tuple(first)))
    finally:
        await source.close()  # the read-ahead entries stay pending for the closed consumer
    again = make_source(redis_url, stream, consumer_name="next", claim_idle_time="100ms", block="50ms")
    await again.open()
    try:
        lane = await first_lane(again)
        rest = await read_n(lane, 45)
        assert len(rest) == 45 and {r.item_id for r in rest} == set(ids[5:])
        read_ahead = ids[5 : 5 + 5 * READ_AHEAD]
        assert {r.item_id for r in rest if r.attempt == 2} == set(read_ahead)  # claimed: delivered once before
        await lane.settle(Outcome(succeeded=tuple(rest)))
        assert await pending_ids(client, stream, "m") == []
    finally:
        await again.close()


async def test_starting_position_latest_and_several_streams(redis_url: str, client: aredis.Redis) -> None:
    streams = [unique("a"), unique("b")]
    for stream in streams:
        await client.xadd(stream, {"old": "1"})
    source = make_source(redis_url, streams, starting_position="LATEST", consumer_group="g")
    await source.open()
    try:
        lanes = []
        async for lane in source.lanes():
            lanes.append(lane)
            if len(lanes) == 2:
                break
        assert [lane.key for lane in lanes] == streams
        for stream in streams:
            await client.xadd(stream, {"new": stream})
        for lane, stream in zip(lanes, streams, strict=True):
            (record,) = await read_n(lane, 1)
            assert record.payload["data"] == {"new": stream}
            await lane.settle(Outcome(succeeded=(record,)))
    finally:
        await source.close()


async def test_close_twice_read_after_close_and_open_failure(redis_url: str) -> None:
    source = make_source(redis_url, unique("closing"))
    await source.close()  # before open
    await source.open()
    lane = await first_lane(source)
    await source.close()
    await source.close()
    with pytest.raises(LaneEnded):
        await lane.read(1, 0.1)
    port = int(redis_url.split(":")[2].split("/")[0])
    away = make_source(f"redis://127.0.0.1:{port + 1 if port < 65535 else 1}/0", "s", connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        await away.open()
    await away.close()


def test_config_checks_and_the_password_stays_out_of_arns() -> None:
    with pytest.raises(ValueError, match="given twice"):
        RedisStreamsConfig.model_validate({"type": "redis", "url": "redis://:a@h:1/0", "password": "b", "stream": "s"})
    with pytest.raises(ValueError, match="distinct"):
        RedisStreamsConfig.model_validate({"type": "redis", "stream": ["s", "s"]})
    with pytest.raises(ValueError, match="redis://"):
        RedisStreamsConfig.model_validate({"type": "redis", "url": "http://h/", "stream": "s"})
    config = RedisStreamsConfig.model_validate(
        {"type": "redis", "url": "redis://user:hunter2@cache:6380/3", "stream": "s"}
    )
    source = RedisStreamsSource(config, SourceContext("m", MemoryStore(), "us-east-1", "000000000000"))
    assert source._lanes["s"].arn == "redis://cache:6380/3/s"
    assert source.group == "m"
    assert all(field.description for name, field in RedisStreamsConfig.model_fields.items() if name != "type")
    assert (CONNECTOR.family, CONNECTOR.data_key) == ("queue", "data")


# ---- the hub as a real process -------------------------------------------------------------------------------

HANDLERS = '''
import json, os

def _write(event):
    with open(os.environ["RECORDER_OUT"], "a") as f:
        f.write(json.dumps({"event": event}) + "\\n")

def partial(event, context):
    """Record the batch; report the entries whose `fail` field is set as failed items."""
    _write(event)
    failed = [r["messageId"] for r in event["Records"] if r["data"].get("fail")]
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
'''


def hub_config(tmp: Path, url: str, stream: str, handler: str, **mapping: Any) -> dict[str, Any]:
    source = {"type": "redis", "url": url, "stream": stream, "block": "200ms", "claim_idle_time": "300ms"}
    source.update(mapping.pop("source", {}))
    return {
        "checkpoints": "memory://",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": handler, "timeout": "10s"}},
        "mappings": [{"name": "redis-e2e", "function": "fn", "source": source, **mapping}],
    }


def deliveries(out: Path) -> list[dict[str, Any]]:
    return [r for entry in read_jsonl(out) for r in entry["event"]["Records"]]


def test_partial_batch_failure_acks_exactly_the_others_and_the_failing_one_reaches_the_destination(
    tmp_path: Path, redis_url: str
) -> None:
    (tmp_path / "redis_handlers.py").write_text(textwrap.dedent(HANDLERS))
    out, dlq = tmp_path / "calls.jsonl", tmp_path / "dlq.jsonl"
    stream = unique("partial")
    sync = redis.Redis.from_url(redis_url)
    ids = [sync.xadd(stream, {"n": str(i), **({"fail": "yes"} if i == 3 else {})}).decode() for i in range(6)]
    config = hub_config(
        tmp_path,
        redis_url,
        stream,
        "redis_handlers.partial",
        batch_size=10,
        maximum_batching_window="100ms",
        function_response_types=["ReportBatchItemFailures"],
        max_receive_count=3,
        destination_config={"on_failure": {"type": "file", "path": str(dlq)}},
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: read_jsonl(dlq), 15, "the failing entry in the destination")
        wait_for(lambda: not sync.xpending(stream, "redis-e2e")["pending"], 5, "an empty pending list")
        seen = deliveries(out)
        good = [r["messageId"] for r in seen if r["messageId"] != ids[3]]
        assert sorted(good) == sorted(ids[:3] + ids[4:])  # each acked after its one delivery
        bad = [r["attributes"]["ApproximateReceiveCount"] for r in seen if r["messageId"] == ids[3]]
        assert bad == ["1", "2", "3"]
        (failure,) = read_jsonl(dlq)
        assert failure["requestContext"]["condition"] == "MaxReceiveCountExceeded"
        assert failure["requestContext"]["approximateInvokeCount"] == 3
        assert failure["requestPayload"]["Records"][0]["messageId"] == ids[3]
        assert hub.stop() == 0
    sync.close()
