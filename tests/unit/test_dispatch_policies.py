"""The stream and queue policies of the dispatcher, with real handlers over the `memory` connector (no broker)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors import memory
from hub.checkpoints import MemoryStore
from hub.config import FileDestination, FunctionConfig, config_model
from hub.destinations import FileSink
from hub.dispatch import Counters, Dispatcher
from hub.functions import Function
from hub.records import Record
from hub.source import SourceContext
from tests.helpers import read_jsonl, read_n


async def make(tmp: Path, handler: str, **settings: Any) -> tuple[Dispatcher, Path]:
    """A dispatcher for a mapping of a fresh memory stream (`d.source`)."""
    name = f"policies-{uuid.uuid4().hex[:8]}"
    raw = {"function": "f", "source": {"type": "memory", "name": name}, "retry_delay": "1ms", **settings}
    mapping = (
        config_model(("memory",))
        .model_validate({"functions": {"f": {"handler": "a.b"}}, "mappings": [raw]})
        .mappings[0]
    )
    context = SourceContext(mapping="policies", store=MemoryStore(), region="us-east-1", account_id="000000000000")
    source = mapping.spec.build(mapping.source, context)
    await source.open()
    fn = Function(
        "f",
        FunctionConfig(runtime="in-process", handler=handler, timeout=2),
        region="us-east-1",
        account_id="000000000000",
    )
    await fn.start()
    dlq = tmp / "dlq.jsonl"
    sink = FileSink(FileDestination(type="file", path=str(dlq)))
    return Dispatcher(mapping, fn, source, sink, _Clock(), asyncio.Event(), Counters()), dlq


async def records(d: Dispatcher, n: int, poison: set[int] = frozenset(), fail: set[int] = frozenset()) -> list[Record]:  # type: ignore[assignment]
    """Put `n` records into the dispatcher's memory stream and read them back: positions 0..n-1."""
    name = d.source.config.name  # type: ignore[attr-defined]
    memory.put(name, *({"n": i, "poison": i in poison, "fail": i in fail} for i in range(n)))
    lane = await anext(aiter(d.source.lanes()))
    return await read_n(lane, n)


class _Clock:
    def time(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.time()))


def positions(rs: Sequence[Record]) -> list[Any]:
    return [r.position for r in rs]


async def test_poison_pill_alone_reaches_the_destination_with_bisect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await make(
        tmp_path, "functions.testing.poison", bisect_batch_on_function_error=True, maximum_retry_attempts=3
    )
    outcome = await d.dispatch(await records(d, 8, poison={5}))
    assert positions(outcome.given_up) == [5]
    assert positions(outcome.succeeded) == [0, 1, 2, 3, 4, 6, 7]
    assert not outcome.failed
    (failure,) = read_jsonl(dlq)
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 4  # the first attempt and 3 retries
    info = failure["MemoryBatchInfo"]
    assert (info["startPosition"], info["endPosition"], info["batchSize"]) == (5, 5, 1)
    assert failure["responseContext"]["functionError"] == "Unhandled"
    # every good record was processed exactly once and in order
    good = [n for call in read_jsonl(tmp_path / "calls.jsonl") if 5 not in call["batch"] for n in call["batch"]]
    assert good == [0, 1, 2, 3, 4, 6, 7]


async def test_without_bisect_the_whole_batch_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await make(tmp_path, "functions.testing.poison", maximum_retry_attempts=2)
    outcome = await d.dispatch(await records(d, 4, poison={1}))
    assert positions(outcome.given_up) == [0, 1, 2, 3]
    assert len(read_jsonl(tmp_path / "calls.jsonl")) == 3
    assert read_jsonl(dlq)[0]["MemoryBatchInfo"]["batchSize"] == 4


async def test_partial_batch_response_checkpoints_up_to_the_lowest_failure(tmp_path: Path) -> None:
    d, _dlq = await make(
        tmp_path,
        "functions.testing.partial",
        function_response_types=["ReportBatchItemFailures"],
        maximum_retry_attempts=1,
    )
    outcome = await d.dispatch(await records(d, 6, fail={3}))
    assert positions(outcome.succeeded) == [0, 1, 2]
    # 3..5 are retried from the lowest failure; 3 keeps failing, so 3..5 go to the destination together
    assert positions(outcome.given_up) == [3, 4, 5]


async def test_invalid_partial_response_fails_the_whole_batch(tmp_path: Path) -> None:
    d, _dlq = await make(
        tmp_path,
        "functions.testing.bad_partial",
        function_response_types=["ReportBatchItemFailures"],
        maximum_retry_attempts=0,
    )
    outcome = await d.dispatch(await records(d, 3))
    assert positions(outcome.given_up) == [0, 1, 2]


async def test_records_older_than_maximum_record_age_are_not_invoked(tmp_path: Path) -> None:
    d, dlq = await make(tmp_path, "functions.recorder.noop", maximum_record_age=60)
    batch = await records(d, 3)
    batch[0].timestamp = time.time() - 3600
    outcome = await d.dispatch(batch)
    assert positions(outcome.given_up) == [0]
    assert positions(outcome.succeeded) == [1, 2]
    assert read_jsonl(dlq)[0]["requestContext"]["condition"] == "RecordAgeExceeded"


async def test_stopping_while_retrying_returns_the_rest_unsettled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await make(
        tmp_path,
        "functions.testing.poison",
        retry_delay="1h",
        maximum_retry_attempts=-1,
        bisect_batch_on_function_error=True,
    )
    task = asyncio.create_task(d.dispatch(await records(d, 4, poison={2})))
    await asyncio.sleep(0.2)
    d.stopping.set()
    outcome = await asyncio.wait_for(task, 5)
    assert positions(outcome.succeeded) == [0, 1]
    assert positions(outcome.failed) == [2, 3]
    assert not dlq.exists()
