"""The stream and queue policies of the dispatcher, with real handlers and a stand-in source (no broker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from hub import registry
from hub.config import FileDestination, FunctionConfig, config_model
from hub.destinations import FileSink
from hub.dispatch import Counters, Dispatcher
from hub.functions import Function
from hub.records import Record
from hub.source import ConnectorSpec
from tests.helpers import read_jsonl


class StubStream:
    def render(self, records: Sequence[Record], attempt: int) -> Any:
        return {"Records": [r.payload for r in records]}

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        return {
            "TestBatchInfo": {"first": records[0].position, "last": records[-1].position, "batchSize": len(records)}
        }


def records(n: int, poison: set[int] = frozenset(), fail: set[int] = frozenset()) -> list[Record]:  # type: ignore[assignment]
    return [
        Record("shard-1", i, {"n": i, "id": f"seq-{i}", "poison": i in poison, "fail": i in fail}, item_id=f"seq-{i}")
        for i in range(n)
    ]


class StubStreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["test-stream"]


registry.register(ConnectorSpec("test-stream", StubStreamConfig, lambda c, x: StubStream(), "stream", "", dict))  # type: ignore[arg-type, return-value]


async def make(tmp: Path, handler: str, **settings: Any) -> tuple[Dispatcher, Path]:
    raw = {"function": "f", "source": {"type": "test-stream"}, "retry_delay": "1ms", **settings}
    mapping = (
        config_model(("test-stream",))
        .model_validate({"functions": {"f": {"handler": "a.b"}}, "mappings": [raw]})
        .mappings[0]
    )
    fn = Function(
        "f",
        FunctionConfig(runtime="in-process", handler=handler, timeout=2),
        region="us-east-1",
        account_id="000000000000",
    )
    await fn.start()
    dlq = tmp / "dlq.jsonl"
    sink = FileSink(FileDestination(type="file", path=str(dlq)))
    return Dispatcher(mapping, fn, StubStream(), sink, _Clock(), asyncio.Event(), Counters()), dlq


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
    outcome = await d.dispatch(records(8, poison={5}))
    assert positions(outcome.given_up) == [5]
    assert positions(outcome.succeeded) == [0, 1, 2, 3, 4, 6, 7]
    assert not outcome.failed
    (failure,) = read_jsonl(dlq)
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 4  # the first attempt and 3 retries
    assert failure["TestBatchInfo"] == {"first": 5, "last": 5, "batchSize": 1}
    assert failure["responseContext"]["functionError"] == "Unhandled"
    # every good record was processed exactly once and in order
    good = [n for call in read_jsonl(tmp_path / "calls.jsonl") if 5 not in call["batch"] for n in call["batch"]]
    assert good == [0, 1, 2, 3, 4, 6, 7]


async def test_without_bisect_the_whole_batch_is_given_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORDER_OUT", str(tmp_path / "calls.jsonl"))
    d, dlq = await make(tmp_path, "functions.testing.poison", maximum_retry_attempts=2)
    outcome = await d.dispatch(records(4, poison={1}))
    assert positions(outcome.given_up) == [0, 1, 2, 3]
    assert len(read_jsonl(tmp_path / "calls.jsonl")) == 3
    assert read_jsonl(dlq)[0]["TestBatchInfo"]["batchSize"] == 4


async def test_partial_batch_response_checkpoints_up_to_the_lowest_failure(tmp_path: Path) -> None:
    d, _dlq = await make(
        tmp_path,
        "functions.testing.partial",
        function_response_types=["ReportBatchItemFailures"],
        maximum_retry_attempts=1,
    )
    outcome = await d.dispatch(records(6, fail={3}))
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
    outcome = await d.dispatch(records(3))
    assert positions(outcome.given_up) == [0, 1, 2]


async def test_records_older_than_maximum_record_age_are_not_invoked(tmp_path: Path) -> None:
    d, dlq = await make(tmp_path, "functions.recorder.noop", maximum_record_age=60)
    batch = records(3)
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
    task = asyncio.create_task(d.dispatch(records(4, poison={2})))
    await asyncio.sleep(0.2)
    d.stopping.set()
    outcome = await asyncio.wait_for(task, 5)
    assert positions(outcome.succeeded) == [0, 1]
    assert positions(outcome.failed) == [2, 3]
    assert not dlq.exists()
