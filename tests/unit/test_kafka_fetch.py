"""The Kafka source's read-ahead (connectors/kafka/fetch.py): fetch responses as record batches in Chunks, taken
and parsed in order with none lost or repeated, and aiokafka's position rules kept (fetch offset, control
batches, compressed batches starting before the fetch offset, CRC).

The module patches aiokafka's private code: the last tests check, against the installed aiokafka, each thing it
relies on (listed in its docstring), so that they fail, naming what changed, when aiokafka changes under it."""

from __future__ import annotations

import ast
import inspect
import random
import struct
import textwrap
from importlib.metadata import version

import pytest
from aiokafka.consumer import fetcher
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from connectors.kafka import fetch
from connectors.kafka.fetch import Buffer, Chunk, HubPartitionRecords, hub_records, install

TP = TopicPartition("orders", 3)


def batch(first: int, count: int, *, compression: int = 0, control: bool = False) -> bytes:
    """A v2 record batch of offsets first..first+count-1, as a broker sends it (base offset = first)."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 22,
    )
    for delta in range(count):
        offset = first + delta
        builder.append(
            delta, timestamp=1_700_000_000_000 + offset, key=b"k%d" % offset, value=b"v%d" % offset, headers=[]
        )
    data = bytearray(builder.build())
    data[0:8] = struct.pack(">q", first)  # the base offset is not covered by the CRC
    if control:
        data[22] |= 0x20  # attributes (int16 at 21): the control bit; the CRC no longer matches
    return bytes(data)


def offsets(chunks: list[Chunk]) -> list[int]:
    return [message.offset for chunk in chunks for message in chunk.messages]


def test_a_fetch_is_one_chunk_per_batch_and_the_position_moves_batch_by_batch() -> None:
    fetched = HubPartitionRecords(TP, MemoryRecords(batch(10, 5) + batch(15, 3)), 10, True)
    assert fetched.next_fetch_offset == 10  # nothing taken yet: aiokafka checks this against its position
    first = next(fetched)
    assert fetched.next_fetch_offset == 15
    rest = list(fetched)
    assert len(rest) == 1 and fetched.next_fetch_offset == 18
    assert offsets([first, *rest]) == [10, 11, 12, 13, 14, 15, 16, 17]


def test_records_before_the_fetch_offset_are_dropped() -> None:
    fetched = HubPartitionRecords(TP, MemoryRecords(batch(10, 5, compression=1) + batch(15, 3)), 12, True)
    chunks = list(fetched)
    assert offsets(chunks) == [12, 13, 14, 15, 16, 17]
    assert fetched.next_fetch_offset == 18


def test_control_batches_are_skipped_but_move_the_position() -> None:
    data = batch(10, 2) + batch(12, 1, control=True) + batch(13, 2) + batch(15, 1, control=True)
    fetched = HubPartitionRecords(TP, MemoryRecords(data), 10, False)
    chunks = list(fetched)
    assert offsets(chunks) == [10, 11, 13, 14]
    assert fetched.next_fetch_offset == 16
    only_control = HubPartitionRecords(TP, MemoryRecords(batch(20, 1, control=True)), 20, False)
    assert list(only_control) == [] and only_control.next_fetch_offset == 21


def test_a_corrupt_batch_fails_the_fetch_when_crcs_are_checked() -> None:
    data = bytearray(batch(10, 3))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordException):
        HubPartitionRecords(TP, MemoryRecords(bytes(data)), 10, True)


def test_old_format_batches_are_read_too() -> None:
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(20, timestamp=1_700_000_000_000, key=b"a", value=b"b")
    fetched = HubPartitionRecords(TP, MemoryRecords(bytes(builder.build())), 20, True)
    chunks = list(fetched)
    assert offsets(chunks) == [20] and fetched.next_fetch_offset == 21


def test_the_buffer_takes_in_order_across_chunks_of_any_size() -> None:
    rng = random.Random(7)
    for _ in range(300):
        buffer, expected, n = Buffer(), [], 0
        for _ in range(30):
            if rng.random() < 0.5:
                size = rng.randint(1, 9)
                if rng.random() < 0.3:  # aiokafka's own path: a list
                    chunks = [Chunk.of(list(range(n, n + size)))]
                else:  # one fetch of one to three batches
                    data = b"".join(batch(n + i, 1) for i in range(size)) if size < 3 else batch(n, size)
                    chunks = list(HubPartitionRecords(TP, MemoryRecords(data), n, False))
                expected.extend(range(n, n + size))
                n += size
                buffer.extend(chunks)
            else:
                limit = rng.randint(1, 12)
                taken = [m if isinstance(m, int) else m.offset for m in buffer.take(limit)]
                assert taken == expected[:limit]
                del expected[:limit]
            assert bool(buffer) == bool(expected)
            assert len(buffer) == len(expected)
        assert [m if isinstance(m, int) else m.offset for m in buffer.take(n + 1)] == expected
        assert not buffer and len(buffer) == 0


def test_a_chunk_that_holds_fewer_records_than_offsets_ends_cleanly() -> None:
    buffer = Buffer()
    buffer.extend([Chunk(iter([1, 2]), 5), Chunk.of([3])])  # compaction removed 3 of the first batch's offsets
    assert buffer.take(2) == [1, 2]
    assert buffer.take(2) == [3]
    assert buffer.take(2) == [] and not buffer and len(buffer) == 0


def test_install_routes_only_the_hubs_consumers() -> None:
    assert install() is True  # the installed aiokafka has the fetcher this was written against
    assert install() is True
    data = batch(0, 2)
    ours = fetcher.PartitionRecords(TP, MemoryRecords(data), [], 0, hub_records, None, True, 0)
    assert isinstance(ours, HubPartitionRecords)
    theirs = fetcher.PartitionRecords(TP, MemoryRecords(data), [], 0, None, None, True, 0)
    assert [record.offset for record in theirs] == [0, 1]  # aiokafka's ConsumerRecords
    committed = fetcher.PartitionRecords(TP, MemoryRecords(data), [], 0, hub_records, None, True, 1)
    assert not isinstance(committed, HubPartitionRecords)  # read_committed: aiokafka's own path


def test_the_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fetch.SWITCH, "off")
    assert install() is False
    monkeypatch.setenv(fetch.SWITCH, "on")
    assert install() is True


# ---- what the patch relies on in aiokafka (fetch.py's docstring), checked against the installed version ----------

AIOKAFKA = f"aiokafka {version('aiokafka')}"


def aiokafkas_partition_records() -> type:
    """aiokafka's own class, whether or not install() has replaced the module global already."""
    install()
    assert fetch._original is not None, f"{AIOKAFKA}: install() found no PartitionRecords of the expected shape"
    return fetch._original  # type: ignore[no-any-return]


def test_aiokafkas_partition_records_takes_the_parameters_the_factory_passes_on() -> None:
    parameters = tuple(inspect.signature(aiokafkas_partition_records().__init__).parameters)
    assert parameters == fetch._EXPECTED_PARAMETERS, f"{AIOKAFKA}: PartitionRecords.__init__{parameters}"
    assert tuple(inspect.signature(fetch._partition_records).parameters) == fetch._EXPECTED_PARAMETERS[1:]


def test_aiokafkas_fetcher_builds_partition_records_through_the_module_global_positionally() -> None:
    """The patch replaces the name in the module: the fetcher must look it up there at each fetch, and call it
    with the parameters in order (the factory's names are not aiokafka's business)."""
    method = fetcher.Fetcher._proc_fetch_request
    assert "PartitionRecords" in method.__code__.co_names, f"{AIOKAFKA}: _proc_fetch_request no longer calls it"
    calls = [
        node
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(method))))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "PartitionRecords"
    ]
    assert calls, f"{AIOKAFKA}: _proc_fetch_request builds PartitionRecords some other way"
    for call in calls:
        assert not call.keywords and len(call.args) == len(fetch._EXPECTED_PARAMETERS) - 1, ast.dump(call)
    assert [ast.unparse(arg) for arg in calls[0].args][3:] == [
        "fetch_offset",
        "self._key_deserializer",
        "self._value_deserializer",
        "self._check_crcs",
        "self._isolation_level",
    ], f"{AIOKAFKA}: the arguments changed order"


async def test_aiokafkas_fetch_result_reads_hub_partition_records_and_moves_the_position_by_batch() -> None:
    """FetchResult is what getmany takes records from: it must use only iteration and `next_fetch_offset`."""
    subscription = SubscriptionState()
    subscription.assign_from_user({TP})
    assignment = subscription.subscription.assignment
    state = assignment.state_value(TP)
    state.seek(10)
    records = HubPartitionRecords(TP, MemoryRecords(batch(10, 5) + batch(15, 3) + batch(18, 2)), 10, True)
    result = fetcher.FetchResult(TP, assignment=assignment, partition_records=records, backoff=0)
    first = result.getall(max_records=1)
    assert offsets(first) == [10, 11, 12, 13, 14] and state.position == 15 and result.has_more()
    second = result.getone()
    assert isinstance(second, Chunk) and offsets([second]) == [15, 16, 17] and state.position == 18
    assert offsets(result.getall()) == [18, 19] and state.position == 20 and not result.has_more()


def test_aiokafkas_record_batches_have_what_hub_partition_records_reads() -> None:
    records = MemoryRecords(batch(10, 2))
    assert records.has_next()
    fetched = records.next_batch()
    assert fetched.validate_crc() is True
    assert (fetched.is_control_batch, fetched.magic, fetched.base_offset, fetched.next_offset) == (False, 2, 10, 12)
    record = next(iter(fetched))
    for name in ("offset", "timestamp", "timestamp_type", "key", "value", "headers"):
        assert hasattr(record, name), f"{AIOKAFKA}: a record has no {name}"
    assert (record.offset, record.key, record.value) == (10, b"k10", b"v10")
