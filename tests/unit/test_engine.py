"""Pure engine logic: the batcher, the contiguous tracker, the checkpoint stores, the Lambda context, and the
asynchronous-invocation policy of the dispatcher (over a schedule: no broker is involved)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.checkpoints import MemoryStore, SqliteStore
from hub.config import FileDestination, FunctionConfig, MappingConfig, config_model
from hub.destinations import FileSink
from hub.dispatch import Backoff, Counters, Dispatcher
from hub.filtering import FilterSet
from hub.functions import Function
from hub.lanes import Batcher
from hub.records import ContiguousTracker, Outcome, Record
from hub.runtimes import LambdaContext
from hub.source import SourceContext
from tests.helpers import MovableClock, read_jsonl


class ListLane:
    """A lane over a list, released in chunks: enough to drive the batcher.

    A stand-in rather than a `memory` lane: the batcher's tests need each read to hand over exactly the next chunk,
    whatever else is there, and to record the (limit, timeout) it was asked with; a real lane returns everything
    that is there, and nothing records how it was called."""

    key = "lane"
    ordered = True

    def __init__(self, chunks: list[list[Record]]) -> None:
        self.chunks = chunks
        self.reads: list[tuple[int, float | None]] = []

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        self.reads.append((limit, timeout))
        if not self.chunks:
            if timeout is None:
                await asyncio.Event().wait()
            await asyncio.sleep(timeout or 0)
            return []
        chunk = self.chunks.pop(0)
        out, rest = chunk[:limit], chunk[limit:]
        if rest:
            self.chunks.insert(0, rest)
        return out

    async def settle(self, outcome: Outcome) -> None:
        pass


def rec(i: int, size: int = 10, data: Any = None) -> Record:
    return Record("lane", i, {"n": i} if data is None else data, size=size, item_id=str(i))


async def test_batch_cut_at_batch_size_and_rest_carried_over() -> None:
    lane = ListLane([[rec(i) for i in range(7)]])
    batcher = Batcher(lane, size=3, window=0, filters=FilterSet.compile([]), on_filtered=lambda r: None)
    assert [r.position for r in await batcher.next()] == [0, 1, 2]
    assert [r.position for r in await batcher.next()] == [3, 4, 5]
    assert [r.position for r in await batcher.next()] == [6]


async def test_window_waits_for_more_records_counted_from_the_first() -> None:
    lane = ListLane([[rec(0)], [rec(1)], [rec(2)]])
    batcher = Batcher(lane, size=10, window=0.2, filters=FilterSet.compile([]), on_filtered=lambda r: None)
    started = time.monotonic()
    batch = await batcher.next()
    assert [r.position for r in batch] == [0, 1, 2]
    assert time.monotonic() - started >= 0.15  # it waited for the window to close, as nothing filled the batch
    assert all(timeout is not None and timeout <= 0.2 for _, timeout in lane.reads[1:])


async def test_without_window_a_batch_is_what_one_read_gives() -> None:
    lane = ListLane([[rec(0), rec(1)], [rec(2)]])
    batcher = Batcher(lane, size=10, window=0, filters=FilterSet.compile([]), on_filtered=lambda r: None)
    assert [r.position for r in await batcher.next()] == [0, 1]


async def test_payload_cap_cuts_the_batch() -> None:
    lane = ListLane([[rec(i, size=4) for i in range(5)]])
    batcher = Batcher(lane, size=10, window=0, filters=FilterSet.compile([]), on_filtered=lambda r: None, max_bytes=10)
    assert [r.position for r in await batcher.next()] == [0, 1]
    assert [r.position for r in await batcher.next()] == [2, 3]


async def test_a_record_over_the_cap_still_goes_alone() -> None:
    lane = ListLane([[rec(0, size=50), rec(1, size=1)]])
    batcher = Batcher(lane, size=10, window=0, filters=FilterSet.compile([]), on_filtered=lambda r: None, max_bytes=10)
    assert [r.position for r in await batcher.next()] == [0]


async def test_filtered_records_never_enter_a_batch() -> None:
    filtered: list[Record] = []
    lane = ListLane([[rec(i, data={"kind": "a" if i % 2 else "b"}) for i in range(6)]])
    filters = FilterSet.compile([{"kind": ["a"]}])
    batcher = Batcher(lane, size=10, window=0, filters=filters, on_filtered=filtered.extend)
    assert [r.position for r in await batcher.next()] == [1, 3, 5]
    assert [r.position for r in filtered] == [0, 2, 4]


def test_contiguous_tracker() -> None:
    tracker = ContiguousTracker()
    tracker.track([1, 2, 3, 4])
    tracker.done([2, 3])
    assert tracker.advance() is None
    tracker.done([1])
    assert tracker.advance() == 3
    assert tracker.advance() is None
    tracker.track([5])
    tracker.done([4, 5])
    assert tracker.advance() == 5
    assert len(tracker) == 0


def test_contiguous_tracker_agrees_with_a_model_whatever_the_order_of_calls() -> None:
    """Random reads and settles, whole batches (the fast path) among them, against a plain model."""
    rng = random.Random(11)
    for _ in range(300):
        tracker, read, settled, n = ContiguousTracker(), [], set(), 0
        for _ in range(40):
            roll = rng.random()
            if roll < 0.35:
                fresh = list(range(n, n + rng.randint(1, 5)))
                n += len(fresh)
                tracker.track(fresh)
                read.extend(fresh)
            elif roll < 0.7 and read:
                whole = rng.random() < 0.4  # everything tracked at once, in order: the fast path
                chosen = list(read) if whole else rng.sample(read, rng.randint(0, len(read)))
                chosen += [10_000 + rng.randint(0, 3)] * rng.randint(0, 1)  # never tracked: ignored
                tracker.done(iter(chosen) if rng.random() < 0.5 else chosen)
                settled.update(p for p in chosen if p in read)
                assert len(tracker) == len(read)
            else:
                moved = None
                while read and read[0] in settled:
                    moved = read.pop(0)
                    settled.discard(moved)
                assert tracker.advance() == moved
        assert len(tracker) == len(read)


@pytest.fixture(scope="module")
def redis_store_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.fixtures_redis import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
async def test_checkpoint_store(tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    from hub.checkpoints import open_store

    if kind == "redis":
        url = request.getfixturevalue("redis_store_url")
        store = open_store(url)
    else:
        store = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "s.db")
    await store.put("a", "k1", "v1")
    await asyncio.gather(*(store.put("a", f"k{i}", f"v{i}") for i in range(2, 200)))
    await store.put_many("b", {"x": "1", "y": "2"})
    await store.delete("b", "x")
    assert await store.get("a", "k150") == "v150"
    assert len(await store.get_all("a")) == 199
    assert await store.get_all("b") == {"y": "2"}
    assert await store.get("b", "x") is None
    await store.close()
    await store.close()  # twice is fine
    if kind != "memory":
        reopened = SqliteStore(tmp_path / "s.db") if kind == "sqlite" else open_store(url)
        assert len(await reopened.get_all("a")) == 199
        await reopened.close()


def test_store_urls_are_redacted_for_logs() -> None:
    from hub.checkpoints import redacted

    assert redacted("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted("redis://user:pw@host/0") == "redis://user:***@host/0"
    assert redacted("sqlite:///.hub/state.db") == "sqlite:///.hub/state.db"


def test_lambda_context() -> None:
    ctx = LambdaContext(
        function_name="resize", memory_limit_in_mb=512, timeout=3.0, region="eu-west-1", account_id="123456789012"
    )
    assert ctx.invoked_function_arn == "arn:aws:lambda:eu-west-1:123456789012:function:resize"
    assert ctx.function_version == "$LATEST"
    assert ctx.log_group_name == "/aws/lambda/resize"
    assert len(ctx.aws_request_id) == 36
    assert 2900 < ctx.get_remaining_time_in_millis() <= 3000


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(1.0, 5.0)
    assert 0.5 <= backoff.delay(1) <= 1.0
    assert 2.0 <= backoff.delay(3) <= 4.0
    assert 2.5 <= backoff.delay(10) <= 5.0


# ---- the dispatcher's asynchronous policy ---------------------------------------------------------------------


SCHEDULE = {"type": "schedule", "expression": "rate(1 minute)", "input": {"attempt": "<aws.scheduler.attempt-number>"}}
"""A schedule whose event says which attempt it is (EventBridge Scheduler's placeholder)."""


def mapping(**settings: Any) -> MappingConfig:
    raw = {"function": "f", "source": SCHEDULE, "retry_delay": "1ms", **settings}
    model = config_model(("schedule",))
    return model.model_validate({"functions": {"f": {"handler": "a.b"}}, "mappings": [raw]}).mappings[0]


async def dispatcher(tmp_path: Path, handler: str, **settings: Any) -> tuple[Dispatcher, Path]:
    """A dispatcher of the asynchronous policy, for a schedule read on a clock that jumps to each fire."""
    cfg = mapping(**settings)
    clock = MovableClock()
    context = SourceContext(mapping="m", store=MemoryStore(), region="us-east-1", account_id="0", clock=clock)
    source = cfg.spec.build(cfg.source, context)
    await source.open()
    fn = Function(
        "f",
        FunctionConfig(runtime="in-process", handler=handler, timeout=1),
        region="us-east-1",
        account_id="000000000000",
    )
    await fn.start()
    path = tmp_path / "dlq.jsonl"
    d = Dispatcher(
        cfg,
        fn,
        source,
        FileSink(FileDestination(type="file", path=str(path))),
        clock,
        asyncio.Event(),
        Counters(),
    )
    return d, path


async def fire(d: Dispatcher) -> Record:
    """The schedule's next fire."""
    lane = await anext(aiter(d.source.lanes()))
    (record,) = await lane.read(1, None)
    return record


async def test_async_success_needs_one_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await dispatcher(tmp_path, "functions.recorder.record")
    record = await fire(d)
    outcome = await d.dispatch([record])
    assert outcome.succeeded == (record,)
    assert len(read_jsonl(tmp_path / "calls.jsonl")) == 1
    assert not dlq.exists()


async def test_async_retries_then_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await dispatcher(tmp_path, "functions.recorder.fail", maximum_retry_attempts=1)
    record = await fire(d)
    outcome = await d.dispatch([record])
    assert outcome.given_up == (record,)
    calls = read_jsonl(tmp_path / "calls.jsonl")
    assert [c["event"]["attempt"] for c in calls] == ["1", "2"]
    (failure,) = read_jsonl(dlq)
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert d.counters.destination_delivered == 1


async def test_async_event_too_old_is_not_invoked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await dispatcher(tmp_path, "functions.recorder.record", maximum_event_age=60)
    old = await fire(d)
    old.timestamp = time.time() - 3600
    outcome = await d.dispatch([old])
    assert outcome.given_up == (old,)
    assert not (tmp_path / "calls.jsonl").exists()
    (failure,) = read_jsonl(dlq)
    assert failure["requestContext"]["condition"] == "EventAgeExceeded"
    assert failure["requestContext"]["approximateInvokeCount"] == 0


async def test_stopping_leaves_a_retrying_record_unsettled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await dispatcher(tmp_path, "functions.recorder.fail", retry_delay="1h")
    record = await fire(d)
    task = asyncio.create_task(d.dispatch([record]))
    await asyncio.sleep(0.05)
    d.stopping.set()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.failed == (record,)
    assert not dlq.exists()


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("functions.testing.returns_garbage", "Runtime.MarshalError"),
        ("functions.testing.hangs", "Sandbox.Timedout"),
        ("functions.testing.async_hangs", "Sandbox.Timedout"),
        ("functions.testing.raises", "KeyError"),
    ],
)
async def test_function_faults_are_failed_invocations(handler: str, error_type: str) -> None:

    fn = Function(
        "f",
        FunctionConfig(runtime="in-process", handler=handler, timeout=0.2),
        region="us-east-1",
        account_id="000000000000",
    )
    await fn.start()
    result = await fn.invoke({"x": 1})
    assert not result.ok
    assert result.payload["errorType"] == error_type
    assert isinstance(result.payload["errorMessage"], str)
    assert isinstance(result.payload["stackTrace"], list)
    await fn.close()


async def test_zero_reserved_concurrency_goes_straight_to_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await dispatcher(tmp_path, "functions.recorder.record")
    d.function.config = FunctionConfig(runtime="in-process", handler="functions.recorder.record", concurrency=0)
    outcome = await d.dispatch([await fire(d)])
    assert len(outcome.given_up) == 1
    assert read_jsonl(dlq)[0]["requestContext"]["condition"] == "ZeroReservedConcurrency"
    assert not (tmp_path / "calls.jsonl").exists()


class EndingLane(ListLane):
    """Gives one chunk, then says the lane ended (a revoked partition)."""

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        if self.chunks:
            return await super().read(limit, timeout)
        from hub.source import LaneEnded

        raise LaneEnded(self.key)


class FlakyLane(ListLane):
    """Fails the second read once (a broker hiccup mid-window)."""

    def __init__(self, chunks: list[list[Record]]) -> None:
        super().__init__(chunks)
        self.failed = False

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        if len(self.reads) == 1 and not self.failed:
            self.failed = True
            self.reads.append((limit, timeout))
            raise ConnectionError("broker away")
        return await super().read(limit, timeout)


async def test_a_lane_that_ends_mid_window_still_dispatches_what_was_gathered() -> None:
    from hub.source import LaneEnded

    batcher = Batcher(
        EndingLane([[rec(0), rec(1)]]), size=10, window=5, filters=FilterSet.compile([]), on_filtered=lambda r: None
    )
    assert [r.position for r in await batcher.next()] == [0, 1]
    with pytest.raises(LaneEnded):
        await batcher.next()


async def test_a_read_error_mid_window_keeps_the_gathered_records() -> None:
    batcher = Batcher(
        FlakyLane([[rec(0)], [rec(1)]]), size=10, window=0.2, filters=FilterSet.compile([]), on_filtered=lambda r: None
    )
    with pytest.raises(ConnectionError):
        await batcher.next()
    assert [r.position for r in await batcher.next()] == [0, 1]
