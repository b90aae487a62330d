"""The Source contract's optional capabilities: the connectors that have them say so by type, and a source run
under a lease (hub.exclusive.LeasedSource) has exactly the capabilities of the source it wraps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from connectors.kafka import KafkaConfig, KafkaSource
from connectors.kinesis import CONNECTOR as KINESIS
from connectors.schedule.source import CONNECTOR as SCHEDULE
from hub.checkpoints import MemoryStore
from hub.exclusive import FencedStore, LeasedSource
from hub.leases import LocalLeases
from hub.records import GiveUp, Lag, Outcome, Record
from hub.source import (
    ArnSource,
    BatchInfoSource,
    DeadLetterSource,
    Document,
    FilterViewSource,
    LagSource,
    Lane,
    SourceContext,
    TraceSource,
)

CAPABILITIES = (BatchInfoSource, FilterViewSource, ArnSource, DeadLetterSource, LagSource, TraceSource)


def context() -> SourceContext:
    return SourceContext(mapping="m", store=MemoryStore(), region="eu-west-1", account_id="123456789012")


class OneLane:
    """The one lane of the sources below: nothing to read."""

    key = "lane"
    ordered = False

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        return []

    async def settle(self, outcome: Outcome) -> None:
        pass


class Plain:
    """A source with none of the optional capabilities."""

    async def open(self) -> None:
        pass

    async def lanes(self) -> AsyncIterator[Lane]:
        yield OneLane()

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        return {"Records": [r.payload for r in records]}

    async def close(self) -> None:
        pass


class Capable(Plain):
    """A source with every optional capability."""

    dead_letter_config = {"type": "file", "path": "dlq.jsonl"}

    def batch_info(self, records: Sequence[Record]) -> dict[str, Any]:
        return {"TestBatchInfo": {"batchSize": len(records)}}

    def filter_view(self, record: Record) -> dict[str, Any]:
        return {"seen": record.payload}

    def event_source_arn(self, lane: str) -> str:
        return f"arn:test:{lane}"

    def dead_letter(self, records: Sequence[Record], give_up: GiveUp) -> Document:
        return Document({"dead": len(records)}, attributes={})

    async def lag(self) -> dict[str, Lag]:
        return {"lane": Lag(offset_lag=7)}

    def trace_context(self, record: Record) -> dict[str, str] | None:
        return {"traceparent": f"00-{record.position:032x}-{1:016x}-01"}


def leased(source: Any) -> LeasedSource:
    return LeasedSource(source, FencedStore(MemoryStore()), LocalLeases(), "m", "m/source")


def test_the_connectors_declare_their_capabilities_by_type() -> None:
    kafka = KafkaSource(
        KafkaConfig.model_validate(
            {"type": "kafka", "bootstrap_servers": "a:9092", "topic": "t", "starting_position": "LATEST"}
        ),
        context(),
    )
    assert isinstance(kafka, BatchInfoSource) and isinstance(kafka, FilterViewSource)
    assert not isinstance(kafka, ArnSource) and not isinstance(kafka, DeadLetterSource)
    kinesis = KINESIS.build(
        KINESIS.config.model_validate(
            {"type": "kinesis", "stream_arn": "arn:aws:kinesis:eu-west-1:1:stream/s", "starting_position": "LATEST"}
        ),
        context(),
    )
    assert isinstance(kinesis, BatchInfoSource) and isinstance(kinesis, ArnSource)
    assert kinesis.event_source_arn("shardId-0") == "arn:aws:kinesis:eu-west-1:1:stream/s"
    schedule = SCHEDULE.build(
        SCHEDULE.config.model_validate({"type": "schedule", "expression": "rate(1 hour)"}), context()
    )
    assert isinstance(schedule, DeadLetterSource) and not isinstance(schedule, BatchInfoSource)


async def test_a_leased_source_has_the_capabilities_of_the_source_it_wraps() -> None:
    record = Record("lane", 1, {"n": 1})
    capable, source = Capable(), leased(Capable())
    for capability in CAPABILITIES:
        assert isinstance(source, capability), capability
    assert source.batch_info([record]) == capable.batch_info([record])
    assert source.filter_view(record) == {"seen": {"n": 1}}
    assert source.event_source_arn("lane") == "arn:test:lane"
    assert source.dead_letter_config == capable.dead_letter_config
    give_up = GiveUp(3, None, "RetriesExhausted", "arn:aws:lambda:eu-west-1:123456789012:function:f")
    assert source.dead_letter([record], give_up).body == {"dead": 1}
    assert source.trace_context(record) == capable.trace_context(record)
    assert await source.lag() == {}  # no lane while the lease is not held
    lanes = source.lanes()
    await anext(lanes)  # a local lease is granted at once: the wrapped source runs
    assert await source.lag() == {"lane": Lag(offset_lag=7)}
    await source.close()
    await lanes.aclose()


async def test_a_leased_plain_source_answers_as_the_hub_does_for_a_source_without_them() -> None:
    record = Record("lane", 1, {"n": 1})
    source = leased(Plain())
    assert source.batch_info([record]) == {}  # an on-failure record without batch info
    assert source.filter_view(record) == {"n": 1}  # filters see the payload
    assert source.event_source_arn("lane") == ""
    assert source.dead_letter_config is None  # no dead-letter queue of its own: none is built
    assert source.trace_context(record) is None and await source.lag() == {}


def test_a_connectors_check_refuses_a_mapping_at_the_setting_it_names(tmp_path: Any) -> None:
    import dataclasses

    import pytest
    from pydantic import BaseModel, ConfigDict

    from hub import registry
    from hub.config import ConfigError, load_config
    from hub.source import MappingFacts, SettingError

    class StrictConfig(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        type: Literal["strict"]
        level: int = 0

    seen: list[tuple[Any, MappingFacts]] = []

    def check(config: StrictConfig, mapping: MappingFacts) -> None:
        seen.append((config, mapping))
        if config.level > 1:
            raise SettingError(("level",), "must be 0 or 1 here")

    registry.register(dataclasses.replace(SCHEDULE, type="strict", config=StrictConfig, check=check, leases=None))
    try:
        path = tmp_path / "hub.yaml"
        body = (
            "functions:\n  f: {handler: functions.recorder.record}\n"
            "mappings:\n  - function: f\n    source: {type: strict, level: %d}\n"
        )
        path.write_text(body % 1)
        assert load_config(path).mappings[0].source.level == 1
        assert seen[-1][1] == MappingFacts(pollers=1)
        path.write_text(body % 2)
        with pytest.raises(ConfigError) as refused:
            load_config(path)
        assert refused.value.errors == [f"{path}:5:35: mappings[0].source.level: must be 0 or 1 here"]
    finally:
        registry._registered.pop("strict", None)


def test_failure_records_are_read_back_and_replayed_through_the_connectors_specs() -> None:
    from hub import registry
    from hub.readback import Letter, describe

    for name, key in (("kinesis", "KinesisBatchInfo"), ("dynamodb", "DDBStreamBatchInfo"), ("kafka", "KafkaBatchInfo")):
        spec = registry.get(name)
        assert spec.batch_info_key == key and spec.reread is not None
    for name in ("sqs", "s3", "kafka", "redis"):
        assert registry.get_destination(name).inbox is not None, name
    by_position = {"KinesisBatchInfo": {"shardId": "shardId-0", "startSequenceNumber": "1", "endSequenceNumber": "2"}}
    assert describe(Letter("k", by_position), registry.get("kinesis"))["replay"] == "source"
    # only the mapping's own connector reads its records again: a kafka mapping cannot replay a Kinesis batch
    assert describe(Letter("k", by_position), registry.get("kafka"))["replay"] is None
    assert describe(Letter("k", by_position))["replay"] is None
