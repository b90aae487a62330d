"""The `schedule` connector, end to end with the hub as a real process."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path

from tests.helpers import ROOT, HubProcess, read_jsonl, shape, wait_for

SCHEDULED_SAMPLE = json.loads((ROOT / "tests/conformance/events/scheduled-event.json").read_text())


def schedule_config(tmp: Path, **source: object) -> dict[str, object]:
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "account_id": "123456789012",
        "region": "eu-west-1",
        "functions": {"tick": {"handler": "functions.recorder.record"}},
        "mappings": [{"name": "every-second", "function": "tick", "source": {"type": "schedule", **source}}],
    }


def test_seconds_rate_fires_with_the_scheduled_event_envelope(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    with HubProcess(
        tmp_path, schedule_config(tmp_path, expression="rate(1 second)"), {"RECORDER_OUT": str(out)}
    ) as hub:
        hub.start()
        wait_for(lambda: len(read_jsonl(out)) >= 3, timeout=15, what="three fires")
        assert hub.stop() == 0
    calls = read_jsonl(out)
    events = [c["event"] for c in calls]
    assert shape(events[0]) == shape(SCHEDULED_SAMPLE)
    assert events[0]["detail-type"] == "Scheduled Event"
    assert events[0]["source"] == "aws.events"
    assert events[0]["account"] == "123456789012"
    assert events[0]["region"] == "eu-west-1"
    assert events[0]["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/every-second"]
    times = [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in events]
    assert all((b - a).total_seconds() == 1 for a, b in itertools.pairwise(times))
    assert len({e["id"] for e in events}) == len(events)
    for call, when in zip(calls, times, strict=True):  # each fire arrives at (not before) its scheduled second
        assert call["received"] >= when.timestamp()


def test_scheduler_input_is_delivered_verbatim_with_placeholders(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    config = schedule_config(
        tmp_path,
        expression="rate(1 second)",
        input={
            "job": "nightly",
            "at": "<aws.scheduler.scheduled-time>",
            "attempt": "<aws.scheduler.attempt-number>",
            "execution": "<aws.scheduler.execution-id>",
            "arn": "<aws.scheduler.schedule-arn>",
        },
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: read_jsonl(out), timeout=15, what="a fire")
        assert hub.stop() == 0
    event = read_jsonl(out)[0]["event"]
    assert event["job"] == "nightly"
    assert event["attempt"] == "1"
    assert event["arn"] == "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/every-second"
    datetime.strptime(event["at"], "%Y-%m-%dT%H:%M:%SZ")
    assert len(event["execution"]) == 36


def test_patterns_apply_to_the_scheduled_event_as_a_whole(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    config = schedule_config(tmp_path, expression="rate(1 second)")
    # only fires whose time ends in an even second pass
    config["mappings"][0]["filter_criteria"] = [  # type: ignore[index]
        {"source": ["aws.events"], "time": [{"wildcard": f"*{d}Z"} for d in "02468"][0:1]},
        *({"time": [{"suffix": f"{d}Z"}]} for d in "2468"),
    ]
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: len(read_jsonl(out)) >= 2, timeout=15, what="two even-second fires")
        assert hub.stop() == 0
        assert "filtered_out=" in hub.log() and "filtered_out=0 " not in hub.log()
    assert all(e["event"]["time"][-2] in "02468" for e in read_jsonl(out))
