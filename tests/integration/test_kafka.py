"""The `kafka` connector against a real Kafka-compatible broker (tansu, started by the fixture).

The first half drives the Source in-process (open, lanes, read, settle, close; commits; starting positions;
rebalances between two members). The second half runs `hub run` as a real process: order per partition, the
on-failure Kafka destination, and two hubs sharing one consumer group. The scenarios every connector passes (restart,
broker cut, SIGKILL...) are in tests/connectors/.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.kafka import CONNECTOR, DESTINATION, fetch
from connectors.kafka.config import KafkaConfig, KafkaDestinationConfig, client_options
from connectors.kafka.destination import KafkaDestination
from connectors.kafka.source import KafkaSource, PartitionLane
from hub.checkpoints import MemoryStore
from hub.records import Outcome, Record
from hub.source import Document, LaneEnded, SourceContext
from tests.fixtures_kafka import (
    committed_offsets,
    committed_offsets_async,
    consume_all_async,
    create_topic,
    create_topic_async,
    free_port,
    numbered,
    produce,
    produce_async,
    unique,
)
from tests.helpers import ROOT, HubProcess, read_jsonl, read_n, shape, wait_for

SAMPLE = json.loads((ROOT / "tests/conformance/events/kafka-event.json").read_text())
SAMPLE_SELF_MANAGED = {k: v for k, v in SAMPLE.items() if k != "eventSourceArn"}
"""AWS's sample is an MSK event; a self-managed Kafka event is the same without `eventSourceArn`."""
FAST = {"session_timeout": 2, "fetch_max_wait": 0.02}
"""Against tansu: a join waits about half the session timeout, and a waiting fetch is not answered early."""


# ---- helpers -----------------------------------------------------------------------------------------------------


def make_source(bootstrap: str, topic: str | list[str], **options: Any) -> KafkaSource:
    settings = {"starting_position": "TRIM_HORIZON", **FAST, **options}
    config = KafkaConfig(type="kafka", bootstrap_servers=bootstrap, topic=topic, **settings)
    context = SourceContext(
        mapping=unique("mapping"), store=MemoryStore(), region="us-east-1", account_id="000000000000"
    )
    return KafkaSource(config, context)


def event_shape(event: dict[str, Any]) -> Any:
    """The shape of a Kafka event, with its `topic-partition` keys (names that differ per topic) set aside."""
    return shape({**event, "records": [record for records in event["records"].values() for record in records]})


async def eventually(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


class Member:
    """An open source and the lanes it has been given, collected in the background."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source
        self.lanes: list[PartitionLane] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Member:
        await self.source.open()
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for lane in self.source.lanes():
            self.lanes.append(lane)

    def live(self) -> dict[str, PartitionLane]:
        return {lane.key: lane for lane in self.lanes if not lane.ending and not lane.ended}

    async def wait_lanes(self, count: int, timeout: float = 15.0) -> dict[str, PartitionLane]:
        await eventually(lambda: len(self.live()) == count, timeout, f"{count} lanes")
        return self.live()

    async def __aexit__(self, *exc: object) -> None:
        await self.source.close()
        if self._task is not None:
            await asyncio.wait_for(self._task, 5)


def offsets(records: list[Record]) -> list[int]:
    return [int(r.position) for r in records]  # type: ignore[call-overload]


async def within(awaitable: Awaitable[Any], timeout: float = 10.0) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


# ---- configuration ------------------------------------------------------------------------------------------------


def test_config_validation_and_defaults() -> None:
    base = {"type": "kafka", "bootstrap_servers": "a:9092, b:9093", "topic": "orders", "starting_position": "LATEST"}
    config = KafkaConfig.model_validate(base)
    assert config.servers == ["a:9092", "b:9093"]
    assert config.topics == ["orders"]
    assert KafkaConfig.model_validate({**base, "bootstrap_servers": ["a:1"], "topic": ["x", "y"]}).topics == ["x", "y"]
    context = SourceContext(mapping="orders mapping", store=MemoryStore(), region="r", account_id="000000000000")
    assert KafkaSource(config, context).group_id == "hub-orders_mapping"
    assert CONNECTOR.family == "stream" and CONNECTOR.data_key == "value"
    assert CONNECTOR.defaults == {"batch_size": 100, "maximum_batching_window": 0.5}
    assert CONNECTOR.retries_with_destination == 10  # AWS caps -1 at 10 once a destination is set
    for field_name, field in KafkaConfig.model_fields.items():
        assert field.description, field_name
    bad: list[dict[str, Any]] = [
        {"bootstrap_servers": "no-port"},
        {"unknown": 1},
        {"starting_position": "AT_TIMESTAMP"},
        {"starting_position_timestamp": 1700000000},
        {"starting_position": "AT_TIMESTAMP", "starting_position_timestamp": time.time() + 3600},
        {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
        {"sasl_username": "u"},
        {"ssl_cafile": "/ca.pem"},
        {"consumer_group_id": "has space"},
        {"topic": "bad topic"},
    ]
    for change in bad:
        with pytest.raises(ValidationError):
            KafkaConfig.model_validate({**base, **change})
    secure = KafkaConfig.model_validate(
        {
            **base,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "u",
            "sasl_password": "hunter2",
        }
    )
    assert "hunter2" not in repr(secure)
    options = client_options(secure)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512" and options["sasl_plain_password"] == "hunter2"
    certifi = pytest.importorskip("certifi")
    tls = KafkaConfig.model_validate({**base, "security_protocol": "SSL", "ssl_cafile": certifi.where()})
    assert isinstance(client_options(tls)["ssl_context"], ssl.SSLContext)
    at = KafkaConfig.model_validate({**base, "starting_position": "AT_TIMESTAMP", "starting_position_timestamp": 0})
    assert at.starting_position_timestamp == datetime.fromtimestamp(0, UTC)
    destination = KafkaDestinationConfig.model_validate({"type": "kafka", "bootstrap_servers": "a:1", "topic": "dlt"})
    assert DESTINATION.config is KafkaDestinationConfig and destination.servers == ["a:1"]


# ---- the source, in-process ---------------------------------------------------------------------------------------


async def test_one_lane_per_partition_records_in_order_in_aws_shape(tansu: str) -> None:
    topic = unique("orders")
    await create_topic_async(tansu, topic, 3)
    messages: list[Any] = [
        (i % 3, f"k{i}".encode(), json.dumps({"n": i}).encode(), [("headerKey", bytes([118, 220, 0, 127, 128]))])
        for i in range(9)
    ]
    messages.append((0, None, b"not json", []))
    await produce_async(tansu, topic, messages)
    async with Member(make_source(tansu, topic)) as member:
        lanes = await member.wait_lanes(3)
        assert sorted(lanes) == [f"{topic}-{p}" for p in range(3)]
        assert all(lane.ordered for lane in lanes.values())
        first = await read_n(lanes[f"{topic}-0"], 4)
        assert offsets(first) == [0, 1, 2, 3]
        record = first[0]
        assert record.lane == f"{topic}-0"
        assert record.identifier == (f"{topic}-0", 0)
        assert record.order_key == b"k0"
        assert abs(record.timestamp - time.time()) < 60
        assert record.size > len(record.payload["value"])
        payload = record.payload
        assert payload["key"] == base64.b64encode(b"k0").decode()
        assert base64.b64decode(payload["value"]) == b'{"n": 0}'
        assert payload["headers"] == [{"headerKey": [118, -36, 0, 127, -128]}]
        assert payload["timestampType"] in ("CREATE_TIME", "LOG_APPEND_TIME")
        assert record.filter_view is None  # built only when a mapping has filters
        assert member.source.filter_view(record)["value"] == {"n": 0}
        assert member.source.filter_view(record)["partition"] == 0
        keyless = first[3]
        assert "key" not in keyless.payload and keyless.order_key is None
        assert member.source.filter_view(keyless)["value"] == "not json"

        event = member.source.render(first[:3], 1)
        assert event["eventSource"] == "SelfManagedKafka"
        assert event["bootstrapServers"] == tansu
        assert "eventSourceArn" not in event
        assert event_shape(event) == event_shape(SAMPLE_SELF_MANAGED)
        assert event_shape(CONNECTOR.sample_event()) == event_shape(SAMPLE_SELF_MANAGED)

        info = member.source.batch_info(first[:3])["KafkaBatchInfo"]
        assert info["batchSize"] == 3 and info["bootstrapServers"] == tansu
        assert info["payloadSize"] == len(json.dumps(event, separators=(",", ":")).encode())
        entry = info["recordsInfo"][f"{topic}-0"]
        assert (entry["firstRecordOffset"], entry["lastRecordOffset"]) == ("0", "2")
        assert entry["firstRecordTimestamp"].endswith("Z")

        for p in (1, 2):
            assert offsets(await read_n(lanes[f"{topic}-{p}"], 3)) == [0, 1, 2]
        assert await lanes[f"{topic}-1"].read(10, 0.05) == []


async def test_commits_only_contiguous_settled_offsets_and_a_restart_resumes_there(tansu: str) -> None:
    topic, group = unique("t"), unique("g")
    await create_topic_async(tansu, topic, 1)
    await produce_async(tansu, topic, numbered(1, 10))
    source = make_source(tansu, topic, consumer_group_id=group)
    async with Member(source) as member:
        lane = (await member.wait_lanes(1))[f"{topic}-0"]
        records = await read_n(lane, 10)
        assert source.committed == {f"{topic}-0": 0}  # the starting position, pinned
        await lane.settle(Outcome(succeeded=tuple(records[5:8])))
        assert source.committed == {f"{topic}-0": 0}  # 0..4 are not settled yet
        await lane.settle(Outcome(filtered=tuple(records[:2]), given_up=tuple(records[2:5])))
        assert source.committed == {f"{topic}-0": 8}
        await lane.settle(Outcome(failed=tuple(records[8:])))  # shutdown: unsettled, never committed
        assert source.committed == {f"{topic}-0": 8}
    await source.close()  # twice
    assert await committed_offsets_async(tansu, group, topic, 1) == {0: 8}
    with pytest.raises(LaneEnded):
        await lane.read(1, 0.1)

    async with Member(make_source(tansu, topic, consumer_group_id=group)) as again:
        lane = (await again.wait_lanes(1))[f"{topic}-0"]
        assert offsets(await read_n(lane, 2)) == [8, 9]


async def test_failed_records_are_read_again_first_within_the_session(tansu: str) -> None:
    """A batch that settles as failed (a fault in the hub's dispatch, not the function's: that is retried or given
    up) is read again before anything newer, without a restart, and holds the commit until it settles."""
    topic, group = unique("t"), unique("g")
    await create_topic_async(tansu, topic, 1)
    await produce_async(tansu, topic, numbered(1, 10))
    source = make_source(tansu, topic, consumer_group_id=group)
    async with Member(source) as member:
        lane = (await member.wait_lanes(1))[f"{topic}-0"]
        first = await read_n(lane, 6)
        await lane.settle(Outcome(succeeded=tuple(first[:3]), failed=tuple(first[3:])))
        assert source.committed == {f"{topic}-0": 3}
        again = await within(lane.read(10, 5))
        assert offsets(again) == [3, 4, 5]  # the failed ones, before offsets 6..9
        assert again[0].payload == first[3].payload
        rest = await read_n(lane, 4)
        assert offsets(rest) == [6, 7, 8, 9]
        await lane.settle(Outcome(succeeded=tuple(rest)))
        assert source.committed == {f"{topic}-0": 3}  # 3..5 still hold it
        await lane.settle(Outcome(succeeded=tuple(again)))
        assert source.committed == {f"{topic}-0": 10}


async def test_compressed_batches_are_read_whole_and_a_restart_inside_one_resumes_at_its_offset(
    tansu: str,
) -> None:
    topic, group = unique("t"), unique("g")
    await create_topic_async(tansu, topic, 1)
    messages = numbered(1, 30)
    await produce_async(tansu, topic, messages, compression_type="gzip")  # gzip batches of several records
    source = make_source(tansu, topic, consumer_group_id=group)
    async with Member(source) as member:
        lane = (await member.wait_lanes(1))[f"{topic}-0"]
        records = await read_n(lane, 30)
        assert offsets(records) == list(range(30))
        assert [base64.b64decode(r.payload["value"]) for r in records] == [m[2] for m in messages]
        await lane.settle(Outcome(succeeded=tuple(records[:13])))
    async with Member(make_source(tansu, topic, consumer_group_id=group)) as again:
        lane = (await again.wait_lanes(1))[f"{topic}-0"]
        assert offsets(await read_n(lane, 17)) == list(range(13, 30))  # the batch holding 13 starts before it


async def test_the_fetch_patch_switched_off_gives_the_same_records_through_aiokafkas_own_path(
    tansu: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """connectors/kafka/fetch.py's one switch: with `HUB_KAFKA_FETCH_PATCH=off` the source reads aiokafka's
    ConsumerRecords (even in a process where another source installed the patch), and its records are the same."""
    topic = unique("t")
    await create_topic_async(tansu, topic, 1)
    await produce_async(tansu, topic, numbered(1, 25))
    await produce_async(tansu, topic, numbered(1, 25), compression_type="gzip")
    read: dict[bool, list[Record]] = {}
    for patched in (True, False):
        monkeypatch.setenv(fetch.SWITCH, "on" if patched else "off")
        source = make_source(tansu, topic)
        async with Member(source) as member:
            lane = (await member.wait_lanes(1))[f"{topic}-0"]
            read[patched] = await read_n(lane, 50)
            assert source._chunked is patched
            assert source._consumer._key_deserializer is (fetch.hub_records if patched else None)
    assert offsets(read[False]) == list(range(50))
    assert [r.payload for r in read[False]] == [r.payload for r in read[True]]


async def test_starting_positions_and_an_existing_groups_offsets_win(tansu: str) -> None:
    topic = unique("t")
    await create_topic_async(tansu, topic, 1)
    await produce_async(tansu, topic, numbered(1, 5), one_by_one=True)
    key = f"{topic}-0"
    trim, latest = make_source(tansu, topic), make_source(tansu, topic, starting_position="LATEST")
    old = make_source(tansu, topic, starting_position="AT_TIMESTAMP", starting_position_timestamp=time.time() - 3600)
    a, b, c = Member(trim), Member(latest), Member(old)
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(m) for m in (a, b, c)))  # joins take a while: in parallel
        lane_a, lane_b, lane_c = await a.wait_lanes(1), await b.wait_lanes(1), await c.wait_lanes(1)
        assert latest.committed == {key: 5}  # LATEST is pinned when first assigned: a restart starts there too
        assert offsets(await read_n(lane_a[key], 5)) == [0, 1, 2, 3, 4]
        assert offsets(await read_n(lane_c[key], 5)) == [0, 1, 2, 3, 4]
        assert await lane_b[key].read(10, 0.2) == []
        await produce_async(tansu, topic, numbered(1, 2))
        got = await read_n(lane_b[key], 2)
        assert offsets(got) == [5, 6]
        records = await read_n(lane_a[key], 2)
        await lane_a[key].settle(Outcome(succeeded=tuple(records)))  # nothing before 5 settled: no commit
        assert trim.committed == {key: 0}

    # the group of `trim` has committed 0, the group of `latest` 5: their offsets win over starting_position
    async def first_offset(group: str, position: str) -> int:
        async with Member(make_source(tansu, topic, consumer_group_id=group, starting_position=position)) as member:
            lane = (await member.wait_lanes(1))[key]
            return offsets(await read_n(lane, 1))[0]

    resumed = await asyncio.gather(first_offset(trim.group_id, "LATEST"), first_offset(latest.group_id, "TRIM_HORIZON"))
    assert list(resumed) == [0, 5]


async def test_a_full_partition_is_paused_until_its_lane_reads(tansu: str) -> None:
    topic = unique("t")
    await create_topic_async(tansu, topic, 2)
    await produce_async(tansu, topic, numbered(2, 200))
    source = make_source(tansu, topic, max_buffered_records=20)
    async with Member(source) as member:
        lanes = await member.wait_lanes(2)
        lane = lanes[f"{topic}-0"]
        await eventually(lambda: lane.tp in source._paused, what="the partition to pause")
        buffered = len(source._buffers[lane.tp])  # one fetch's worth: tansu returns what it has, at once
        await produce_async(tansu, topic, numbered(2, 200, prefix="more"))
        await asyncio.sleep(0.3)  # the poller keeps polling; the paused partition must not grow
        assert len(source._buffers[lane.tp]) == buffered
        got = await read_n(lane, buffered - 10)
        assert lane.tp not in source._paused  # half of the limit is free again
        got += await read_n(lane, 200 - len(got))
        assert offsets(got) == list(range(200))
        assert offsets(await read_n(lanes[f"{topic}-1"], 200)) == list(range(200))


async def test_rebalance_commits_what_settled_and_the_new_owner_resumes_there(tansu: str) -> None:
    topic, group = unique("t"), unique("g")
    await create_topic_async(tansu, topic, 4)
    await produce_async(tansu, topic, numbered(4, 80))
    first = make_source(tansu, topic, consumer_group_id=group, rebalance_grace=0.5)
    async with Member(first) as a:
        old = await a.wait_lanes(4)
        held: dict[str, list[Record]] = {}
        for key, lane in old.items():
            records = await read_n(lane, 20)
            await lane.settle(Outcome(succeeded=tuple(records[:5])))
            held[key] = records[5:]  # in flight when the rebalance comes: never committed
        second = make_source(tansu, topic, consumer_group_id=group, rebalance_grace=0.5)
        async with Member(second) as b:
            await eventually(lambda: len(a.live()) + len(b.live()) == 4 and a.live() and b.live(), 20, "a rebalance")
            assert all(lane.ended for lane in old.values())
            with pytest.raises(LaneEnded):
                await within(next(iter(old.values())).read(10, None))
            for key, lane in old.items():  # the old lanes' batches finish late: nothing is committed for them
                await lane.settle(Outcome(succeeded=tuple(held[key])))
            assert await committed_offsets_async(tansu, group, topic, 4) == dict.fromkeys(range(4), 5)
            for lane in [*a.live().values(), *b.live().values()]:
                assert offsets(await read_n(lane, 15)) == list(range(5, 20))


async def test_batches_that_settle_within_the_rebalance_grace_are_committed(tansu: str) -> None:
    topic, group = unique("t"), unique("g")
    await create_topic_async(tansu, topic, 2)
    await produce_async(tansu, topic, numbered(2, 20))
    first = make_source(tansu, topic, consumer_group_id=group, rebalance_grace=10)
    async with Member(first) as a:
        old = await a.wait_lanes(2)
        held = {key: await read_n(lane, 10) for key, lane in old.items()}

        async def settle_when_revoked() -> None:
            await eventually(lambda: all(lane.ending for lane in old.values()), 20, "the revocation")
            await asyncio.sleep(0.2)
            for key, lane in old.items():
                await lane.settle(Outcome(succeeded=tuple(held[key])))

        settler = asyncio.create_task(settle_when_revoked())
        async with Member(make_source(tansu, topic, consumer_group_id=group)) as b:
            await within(settler, 25)
            await eventually(lambda: len(a.live()) + len(b.live()) == 2, 20, "the new assignment")
            assert await committed_offsets_async(tansu, group, topic, 2) == {0: 10, 1: 10}
            for lane in [*a.live().values(), *b.live().values()]:
                assert await lane.read(10, 0.3) == []  # nothing is delivered twice


async def test_open_without_a_broker_raises_and_close_is_safe(tansu: str) -> None:
    source = make_source(f"127.0.0.1:{free_port()}", "t")
    with pytest.raises(Exception):  # noqa: B017 - aiokafka's KafkaConnectionError
        await within(source.open(), 30)
    await source.close()
    await source.close()
    never = make_source(tansu, "t")
    await never.close()  # never opened


async def test_destination_sends_each_document_with_its_key(tansu: str) -> None:
    topic = unique("dlt")
    await create_topic_async(tansu, topic, 2)
    config = KafkaDestinationConfig(type="kafka", bootstrap_servers=tansu, topic=topic)
    destination = DESTINATION.build(config, "us-east-1")
    assert destination.per_record and destination.includes_payload
    await destination.send([Document({"n": 1}, key=b"k1"), Document({"n": 2}, key=None)])
    await destination.close()
    await destination.close()
    got = await consume_all_async(tansu, topic, 2)
    assert sorted((json.loads(m.value)["n"], m.key) for m in got) == [(1, b"k1"), (2, None)]

    unreachable = KafkaDestination(
        KafkaDestinationConfig(type="kafka", bootstrap_servers=f"127.0.0.1:{free_port()}", topic=topic, send_timeout=2)
    )
    with pytest.raises(Exception):  # noqa: B017 - aiokafka's KafkaConnectionError
        await within(unreachable.send([Document({"n": 3})]), 30)
    await unreachable.close()


# ---- the hub, end to end --------------------------------------------------------------------------------------------


def hub_config(
    tmp: Path, bootstrap: str, topic: str, group: str, handler: str = "record", **mapping: Any
) -> dict[str, Any]:
    source = {
        "type": "kafka",
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "consumer_group_id": group,
        "starting_position": "TRIM_HORIZON",
        "session_timeout": "2s",
        "fetch_max_wait": "20ms",
        "rebalance_grace": "2s",
    }
    source.update(mapping.pop("source", {}))
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": f"functions.recorder.{handler}", "timeout": "10s"}},
        "mappings": [
            {"name": "orders", "function": "fn", "source": source, "maximum_batching_window": "20ms", **mapping}
        ],
    }


def handled(out: Path) -> list[dict[str, Any]]:
    """Every record the function was given, in call order, with the invocation index."""
    rows = []
    for call, entry in enumerate(read_jsonl(out)):
        for records in entry["event"]["records"].values():
            for record in records:
                rows.append({**record, "call": call, "data": json.loads(base64.b64decode(record["value"]))})
    return rows


def ids(out: Path) -> Counter[str]:
    return Counter(row["data"]["id"] for row in handled(out))


def in_order_per_partition(rows: list[dict[str, Any]]) -> bool:
    last: dict[int, int] = {}
    for row in rows:
        if row["offset"] <= last.get(row["partition"], -1):
            return False
        last[row["partition"]] = row["offset"]
    return True


def test_hub_delivers_every_record_in_order_per_partition(tmp_path: Path, tansu: str) -> None:
    topic, group, out = unique("t"), unique("g"), tmp_path / "calls.jsonl"
    create_topic(tansu, topic, 3)
    config = hub_config(tmp_path, tansu, topic, group, batch_size=7)
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("partitions assigned")
        produce(tansu, topic, numbered(3, 90))
        wait_for(lambda: len(ids(out)) == 90, 30, "90 records handled")
        rows = handled(out)
        assert len(rows) == 90 and in_order_per_partition(rows)
        events = [entry["event"] for entry in read_jsonl(out)]
        assert all(len(e["records"]) == 1 and sum(map(len, e["records"].values())) <= 7 for e in events)
        assert event_shape(events[0]) == event_shape(SAMPLE_SELF_MANAGED)
        wait_for(lambda: committed_offsets(tansu, group, topic, 3) == dict.fromkeys(range(3), 30), 10, "commits")
        assert hub.stop() == 0


def test_given_up_records_go_to_a_kafka_topic_keyed_as_they_were(tmp_path: Path, tansu: str) -> None:
    topic, dlt, group, out = unique("t"), unique("dlt"), unique("g"), tmp_path / "calls.jsonl"
    create_topic(tansu, topic, 1)
    create_topic(tansu, dlt, 1)
    config = hub_config(
        tmp_path,
        tansu,
        topic,
        group,
        handler="fail",
        batch_size=2,
        maximum_retry_attempts=1,
        retry_delay="10ms",
        destination_config={"on_failure": {"type": "kafka", "bootstrap_servers": tansu, "topic": dlt}},
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        produce(tansu, topic, [(0, b"key-a", b'{"id": "a"}'), (0, b"key-b", b'{"id": "b"}')])
        got = asyncio.run(consume_all_async(tansu, dlt, 2, timeout=30))
        assert sorted(m.key for m in got) == [b"key-a", b"key-b"]
        body = json.loads(got[0].value)
        assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert body["requestContext"]["approximateInvokeCount"] == 2
        info = body["KafkaBatchInfo"]
        assert info["batchSize"] == 1 and info["bootstrapServers"] == tansu
        assert set(info["recordInfo"]) == {"offset", "timestamp"}
        (records,) = body["payload"]["records"].values()
        assert body["payload"]["eventSource"] == "SelfManagedKafka"
        assert [r["offset"] for r in records] == [int(info["recordInfo"]["offset"])]
        wait_for(lambda: committed_offsets(tansu, group, topic, 1) == {0: 2}, 10, "the lane to move on")
        assert hub.stop() == 0


def test_two_hubs_share_the_partitions_without_loss(tmp_path: Path, tansu: str) -> None:
    topic, group = unique("t"), unique("g")
    partitions, first_half, second_half = 4, 1200, 400
    create_topic(tansu, topic, partitions)
    dirs = [tmp_path / "one", tmp_path / "two"]
    outs = [d / "calls.jsonl" for d in dirs]
    hubs = []
    for folder, out in zip(dirs, outs, strict=True):
        folder.mkdir()
        config = hub_config(folder, tansu, topic, group, handler="slow", batch_size=10)
        hubs.append(HubProcess(folder, config, {"SLOW_SECONDS": "0.2", "RECORDER_OUT": str(out)}))

    def all_ids() -> Counter[str]:
        return ids(outs[0]) + ids(outs[1])

    one, two = hubs
    with one, two:
        one.start()
        one.wait_log("partitions assigned")
        produce(tansu, topic, numbered(partitions, first_half))
        wait_for(lambda: len(ids(outs[0])) >= 100, 30, "the first hub to make progress")
        two.start()
        two.wait_log("partitions assigned", timeout=30)  # the rebalance, while the first hub has batches in flight
        assert len(all_ids()) < first_half
        produce(tansu, topic, numbered(partitions, second_half, prefix="s"))
        wait_for(lambda: len(all_ids()) == first_half + second_half, 60, "every record")
        assert any(key.startswith("s") for key in ids(outs[1])), "the second hub got no partition"
        assert one.stop() == 0
        assert two.stop() == 0
    expected = {f"r{i}" for i in range(first_half)} | {f"s{i}" for i in range(second_half)}
    assert set(all_ids()) == expected
    total = first_half + second_half
    assert committed_offsets(tansu, group, topic, partitions) == dict.fromkeys(range(partitions), total // partitions)
    duplicates = sum(n - 1 for n in all_ids().values())
    assert duplicates <= partitions * 10, f"{duplicates} duplicates: more than one batch in flight per partition"


def test_sigterm_commits_what_settled(tmp_path: Path, tansu: str) -> None:
    topic, group, out = unique("t"), unique("g"), tmp_path / "calls.jsonl"
    create_topic(tansu, topic, 2)
    produce(tansu, topic, numbered(2, 40))
    config = hub_config(tmp_path, tansu, topic, group, batch_size=5)
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: len(ids(out)) == 40, 30, "40 records handled")
        assert hub.stop(signal.SIGTERM) == 0
    assert committed_offsets(tansu, group, topic, 2) == {0: 20, 1: 20}
