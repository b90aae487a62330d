"""The `memory` connector's own rules: its settings, lanes and keys, LATEST, redelivery delays, the cut switch, puts
from other threads, filters and the on-failure batch info. The scenarios every connector passes (read and settle,
redelivery, restart, a broker cut, SIGKILL) run for it in tests/connectors/."""

from __future__ import annotations

import asyncio
import threading
import uuid
import zlib
from typing import Any

import pytest
from pydantic import ValidationError

from connectors import memory
from connectors.memory import CONNECTOR, QUEUE_CONNECTOR, MemoryConfig, MemorySource
from hub.checkpoints import MemoryStore
from hub.config import config_model
from hub.filtering import FilterSet
from hub.records import Outcome
from hub.source import LaneEnded, SourceContext
from tests.helpers import read_n


def fresh(prefix: str = "mem") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def source(name: str, store: MemoryStore | None = None, **settings: Any) -> MemorySource:
    config = MemoryConfig.model_validate({"type": "memory", "name": name, **settings})
    context = SourceContext(mapping="m", store=store or MemoryStore(), region="eu-west-1", account_id="0")
    built = CONNECTOR.build(config, context)
    assert isinstance(built, MemorySource)
    return built


async def lanes(src: MemorySource) -> list[Any]:
    """The lanes an open source yields at once."""
    out = []
    async for lane in src.lanes():
        out.append(lane)
        if len(out) == len(src._lanes):
            return out
    return out


def mapping(**settings: Any) -> Any:
    raw = {"function": "f", **settings}
    return config_model(("memory",)).model_validate({"functions": {"f": {"handler": "a.b"}}, "mappings": [raw]})


def test_the_mode_chooses_the_family_and_its_settings() -> None:
    stream = mapping(source={"type": "memory", "name": "s"}).mappings[0]
    queue = mapping(source={"type": "memory", "name": "q", "mode": "queue"}).mappings[0]
    assert (stream.spec.family, queue.spec.family) == ("stream", "queue")
    assert queue.spec is QUEUE_CONNECTOR and stream.spec is CONNECTOR
    assert (stream.setting("batch_size"), queue.setting("batch_size")) == (100, 10)
    with pytest.raises(ValidationError, match=r"does not apply to memory sources \(a queue source\)"):
        mapping(source={"type": "memory", "name": "q", "mode": "queue"}, bisect_batch_on_function_error=True)
    with pytest.raises(ValidationError, match=r"does not apply to memory sources \(a stream source\)"):
        mapping(source={"type": "memory", "name": "s"}, max_receive_count=3)
    with pytest.raises(ValidationError, match="lanes: not used with mode queue"):
        MemoryConfig.model_validate({"type": "memory", "name": "q", "mode": "queue", "lanes": 2})
    with pytest.raises(ValidationError, match="redelivery_delay: not used with mode stream"):
        MemoryConfig.model_validate({"type": "memory", "name": "s", "redelivery_delay": "1s"})
    for name, field in MemoryConfig.model_fields.items():
        assert field.description or name == "type", name


async def test_a_stream_spreads_by_key_and_round_robin_and_each_lane_is_in_order() -> None:
    name = fresh()
    memory.create(name, lanes=3)
    placed = memory.put(name, *range(6))
    assert [lane for lane, _ in placed] == [0, 1, 2, 0, 1, 2]
    keyed = memory.put(name, "a", "b", key="customer-7")
    assert {lane for lane, _ in keyed} == {zlib.crc32(b"customer-7") % 3}
    src = source(name, lanes=3)
    await src.open()
    found = {lane.key: lane for lane in await lanes(src)}
    assert set(found) == {f"{name}-0", f"{name}-1", f"{name}-2"} and all(lane.ordered for lane in found.values())
    first = await read_n(found[f"{name}-0"], 2)
    assert [r.payload["data"] for r in first] == [0, 3] and [r.position for r in first] == [0, 1]
    record = first[1]
    assert record.payload["messageId"] == record.item_id == f"{name}-0:1"
    assert record.payload["sequenceNumber"] == "1" and record.attempt == 1
    assert record.payload["eventSourceARN"] == f"memory://{name}" and record.payload["awsRegion"] == "eu-west-1"
    info = src.batch_info(first)["MemoryBatchInfo"]
    assert (info["lane"], info["startPosition"], info["endPosition"], info["batchSize"]) == (f"{name}-0", 0, 1, 2)
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    await src.close()


async def test_latest_starts_after_what_is_there_and_a_restart_does_not_skip_what_came_meanwhile() -> None:
    name, store = fresh(), MemoryStore()
    memory.create(name)
    memory.put(name, "old")
    src = source(name, store, starting_position="LATEST")
    await src.open()
    (lane,) = await lanes(src)
    memory.put(name, "new-1")
    assert [r.payload["data"] for r in await read_n(lane, 1)] == ["new-1"]
    await src.close()
    memory.put(name, "new-2")  # while no source reads: a restart finds it, nothing having settled
    again = source(name, store, starting_position="LATEST")
    await again.open()
    (lane,) = await lanes(again)
    assert [r.payload["data"] for r in await read_n(lane, 2)] == ["new-1", "new-2"]
    await again.close()


async def test_a_failed_queue_record_waits_its_redelivery_delay_and_counts_its_deliveries() -> None:
    name = fresh()
    src = source(name, mode="queue", redelivery_delay="300ms")
    await src.open()
    (lane,) = await lanes(src)
    assert not lane.ordered and lane.key == name
    memory.put(name, {"n": 1}, {"n": 2})
    first, second = await read_n(lane, 2)
    await lane.settle(Outcome(succeeded=(first,), failed=(second,)))
    assert await lane.read(10, 0) == []  # not before its delay
    (again,) = await lane.read(10, 5)
    assert again.item_id == second.item_id and again.attempt == 2
    assert again.payload["attributes"]["ApproximateReceiveCount"] == "2"
    await lane.settle(Outcome(succeeded=(again,)))
    assert memory.waiting(name) == 0
    await src.close()


async def test_closing_ends_a_waiting_read_and_gives_back_what_the_queue_held() -> None:
    name = fresh()
    src = source(name, mode="queue")
    await src.open()
    (lane,) = await lanes(src)
    waiting = asyncio.ensure_future(lane.read(10, None))
    await asyncio.sleep(0.05)
    memory.put(name, "held")
    (held,) = await asyncio.wait_for(waiting, 5)
    reading = asyncio.ensure_future(lane.read(10, None))
    await asyncio.sleep(0.05)
    await src.close()
    with pytest.raises(LaneEnded):
        await asyncio.wait_for(reading, 5)
    await lane.settle(Outcome(succeeded=(held,)))  # too late: it went back to the queue at close
    other = source(name, mode="queue")
    await other.open()
    (lane,) = await lanes(other)
    (again,) = await read_n(lane, 1)
    assert again.item_id == held.item_id and again.attempt == 2
    await other.close()


async def test_a_cut_channel_refuses_everything_and_a_failed_settle_delivers_again() -> None:
    name = fresh()
    src = source(name, mode="queue")
    await src.open()
    (lane,) = await lanes(src)
    memory.put(name, "a")
    (record,) = await read_n(lane, 1)
    memory.cut(name)
    with pytest.raises(ConnectionError, match="is cut"):
        await lane.read(10, 0.1)
    with pytest.raises(ConnectionError):
        await lane.settle(Outcome(succeeded=(record,)))
    with pytest.raises(ConnectionError):
        await source(name, mode="queue").open()
    memory.restore(name)
    (again,) = await read_n(lane, 1)
    assert again.item_id == record.item_id and again.attempt == 2
    await lane.settle(Outcome(succeeded=(again,)))
    assert memory.waiting(name) == 0
    await src.close()


async def test_a_stream_settle_on_a_cut_channel_checkpoints_nothing_and_reads_again() -> None:
    name, store = fresh(), MemoryStore()
    src = source(name, store)
    await src.open()
    (lane,) = await lanes(src)
    memory.put(name, 0, 1, 2)
    records = await read_n(lane, 3)
    memory.cut(name)
    with pytest.raises(ConnectionError):
        await lane.settle(Outcome(succeeded=tuple(records)))
    assert await store.get(src.scope, lane.key) is None
    memory.restore(name)
    assert [r.position for r in await read_n(lane, 3)] == [0, 1, 2]
    await src.close()


async def test_a_put_from_another_thread_wakes_a_waiting_read() -> None:
    name = fresh()
    src = source(name)
    await src.open()
    (lane,) = await lanes(src)
    reading = asyncio.ensure_future(lane.read(10, None))
    await asyncio.sleep(0.05)
    putter = threading.Thread(target=memory.put, args=(name, "from a thread"))
    putter.start()
    (record,) = await asyncio.wait_for(reading, 5)
    putter.join()
    assert record.payload["data"] == "from a thread"
    await src.close()


async def test_records_are_put_once_when_the_process_creates_the_channel() -> None:
    name = fresh()
    first = source(name, records=[{"n": 1}, {"n": 2}])
    await first.open()
    await first.close()
    await source(name, records=[{"n": 1}, {"n": 2}]).open()  # the channel exists: nothing is put again
    assert memory.waiting(name) == 2
    with pytest.raises(ValueError, match="is a stream of 1 lanes, not a queue"):
        await source(name, mode="queue").open()


async def test_filters_see_the_metadata_and_data_parsed_when_it_is_json_text() -> None:
    name = fresh()
    src = source(name)
    await src.open()
    (lane,) = await lanes(src)
    memory.put(name, '{"kind": "book"}', {"kind": "pen"}, "plain text", key="k")
    text, value, plain = await read_n(lane, 3)
    books = FilterSet.compile([{"data": {"kind": ["book"]}, "partitionKey": ["k"]}])
    assert books.matches(src.filter_view(text))
    assert not books.matches(src.filter_view(value))
    assert FilterSet.compile([{"data": {"kind": ["pen"]}}]).matches(src.filter_view(value))
    assert src.filter_view(plain)["data"] == "plain text"
    assert text.payload["data"] == '{"kind": "book"}'  # the function gets it as it was put
    await src.close()
