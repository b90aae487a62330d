"""The schedule source with an injected clock: fire order, checkpoints and the misfire policies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.schedule.source import ScheduleConfig, ScheduleSource
from hub.checkpoints import MemoryStore
from hub.records import Outcome
from hub.source import SourceContext
from tests.helpers import MovableClock

T0 = datetime(2026, 3, 7, 12, 0, tzinfo=UTC).timestamp()


def make(store: MemoryStore, clock: MovableClock, **config: object) -> ScheduleSource:
    cfg = ScheduleConfig.model_validate({"type": "schedule", **config})
    return ScheduleSource(
        cfg, SourceContext(mapping="m", store=store, region="us-east-1", account_id="123456789012", clock=clock)
    )


def times(records: list) -> list[str]:
    return [r.payload["time"] for r in records]


async def test_rate_fires_in_order_and_checkpoints_the_newest_contiguous_fire() -> None:
    store, clock = MemoryStore(), MovableClock(T0)
    source = make(store, clock, expression="rate(5 minutes)")
    await source.open()
    first = await source.read(1, None)
    second = await source.read(1, None)
    assert times(first + second) == ["2026-03-07T12:05:00Z", "2026-03-07T12:10:00Z"]
    await source.settle(Outcome(succeeded=tuple(second)))  # out of order: nothing to checkpoint yet
    assert (await store.get("m/schedule", "last")) == datetime.fromtimestamp(T0, UTC).isoformat()
    await source.settle(Outcome(succeeded=tuple(first)))
    assert (await store.get("m/schedule", "last")) == "2026-03-07T12:10:00+00:00"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("run_all", ["2026-03-07T12:10:00Z", "2026-03-07T12:15:00Z", "2026-03-07T12:20:00Z"]),
        ("run_once", ["2026-03-07T12:20:00Z"]),
        ("skip", []),
    ],
)
async def test_misfire_policy_after_downtime(policy: str, expected: list[str]) -> None:
    store, clock = MemoryStore(), MovableClock(T0)
    source = make(store, clock, expression="rate(5 minutes)", misfire=policy)
    await source.open()
    fired = await source.read(1, None)
    await source.settle(Outcome(succeeded=tuple(fired)))
    await source.close()
    clock.now = T0 + 22 * 60  # down from 12:05 to 12:22: 12:10, 12:15 and 12:20 were missed
    source = make(store, clock, expression="rate(5 minutes)", misfire=policy)
    await source.open()
    caught_up = await source.read(10, 0) if expected else []
    assert times(caught_up) == expected
    assert times(await source.read(1, None)) == ["2026-03-07T12:25:00Z"]  # rate counts from the start


async def test_unsettled_fire_runs_again_after_a_restart() -> None:
    store, clock = MemoryStore(), MovableClock(T0)
    source = make(store, clock, expression="cron(0/5 * * * ? *)")
    await source.open()
    await source.read(1, None)  # 12:05 fires but never settles (the hub was killed)
    clock.now += 60
    source = make(store, clock, expression="cron(0/5 * * * ? *)")
    await source.open()
    assert times(await source.read(1, 0)) == ["2026-03-07T12:05:00Z"]


async def test_cron_in_a_time_zone_skips_the_missing_hour() -> None:
    store = MemoryStore()
    clock = MovableClock(datetime(2026, 3, 7, 0, 0, tzinfo=UTC).timestamp())
    source = make(store, clock, expression="cron(30 2 * * ? *)", timezone="America/New_York")
    await source.open()
    fired = [await source.read(1, None) for _ in range(2)]
    # 2:30 does not exist in New York on 2026-03-08: that day is skipped
    assert [times(f)[0] for f in fired] == ["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"]


async def test_input_placeholders_change_per_attempt() -> None:
    store, clock = MemoryStore(), MovableClock(T0)
    source = make(
        store,
        clock,
        expression="rate(1 minute)",
        input={"n": "<aws.scheduler.attempt-number>", "id": "<aws.scheduler.execution-id>"},
    )
    await source.open()
    records = await source.read(1, None)
    first, second = source.render(records, 1), source.render(records, 2)
    assert (first["n"], second["n"]) == ("1", "2")
    assert first["id"] != second["id"]


def test_invalid_expression_and_time_zone_are_config_errors() -> None:
    with pytest.raises(ValueError, match="rate"):
        ScheduleConfig.model_validate({"type": "schedule", "expression": "rate(0 minutes)"})
    with pytest.raises(ValueError, match="IANA"):
        ScheduleConfig.model_validate({"type": "schedule", "expression": "rate(1 minute)", "timezone": "Nowhere/X"})
    with pytest.raises(ValueError, match="end_date"):
        ScheduleConfig.model_validate(
            {
                "type": "schedule",
                "expression": "rate(1 minute)",
                "start_date": "2026-02-01T00:00:00",
                "end_date": "2026-01-01T00:00:00",
            }
        )
