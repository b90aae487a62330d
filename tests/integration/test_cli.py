"""The `hub` command as a user runs it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.helpers import ROOT, HubProcess, run_cli, shape

SAMPLES = ROOT / "tests/conformance/events"


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "validate", "invoke", "events", "test-pattern", "schema"):
        assert command in result.stdout
    assert "handler(event, context)" in result.stdout


def test_invoke_prints_the_result(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text((SAMPLES / "s3-event.json").read_text())
    result = run_cli("invoke", "s3_report", "--event", str(event), "--config", "config/hub.yaml")
    assert result.returncode == 0, result.stderr
    body = json.loads(json.loads(result.stdout)["body"])
    assert body == [{"bucket": "sourcebucket", "key": "Happy Face.jpg", "size": 1024}]
    assert "request_id=" in result.stderr and "duration_ms=" in result.stderr


def test_invoke_of_a_failing_function_exits_1_with_lambdas_error_shape(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("functions:\n  bad: {handler: functions.testing.raises}\n")
    result = run_cli("invoke", "bad", "--event", '{"a": 1}', "--config", str(config))
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["errorType"] == "KeyError"
    assert set(error) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert error["stackTrace"] and "functions/testing.py" in error["stackTrace"][0]  # the handler's frames only


def test_invoke_with_a_missing_module_says_what_to_check(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("functions:\n  f: {handler: functions.nope.handler}\n")
    result = run_cli("invoke", "f", "--config", str(config))
    assert result.returncode == 2
    assert "Unable to import module 'functions.nope'" in result.stderr


def test_events_prints_samples_shaped_like_aws() -> None:
    assert shape(json.loads(run_cli("events", "files").stdout)) == shape(
        json.loads((SAMPLES / "s3-event.json").read_text())
    )
    scheduled = json.loads((SAMPLES / "scheduled-event.json").read_text())
    assert shape(json.loads(run_cli("events", "schedule").stdout)) == shape(scheduled)
    listing = run_cli("events")
    assert "files" in listing.stdout and "schedule" in listing.stdout
    unknown = run_cli("events", "nosuch")
    assert unknown.returncode == 2 and "unknown source" in unknown.stderr


def test_events_prints_the_variants_a_setting_chooses() -> None:
    msk = json.loads(run_cli("events", "kafka", "msk").stdout)
    assert msk["eventSource"] == "aws:kafka" and msk["eventSourceArn"].startswith("arn:aws:kafka:")
    scheduler = json.loads(run_cli("events", "schedule", "scheduler").stdout)
    assert scheduler["source"] == "aws.scheduler" and scheduler["detail"] == "{}"
    assert "kafka" in (listing := run_cli("events").stdout) and "(variants: msk)" in listing
    unknown = run_cli("events", "kafka", "nosuch")
    assert unknown.returncode == 2 and "no event variant 'nosuch'" in unknown.stderr and "msk" in unknown.stderr


def test_test_pattern() -> None:
    event = '{"detail": {"state": "running", "n": 5}}'
    assert (
        run_cli("test-pattern", "--pattern", '{"detail": {"state": ["running"]}}', "--event", event).stdout == "true\n"
    )
    assert (
        run_cli("test-pattern", "--pattern", '{"detail": {"n": [{"numeric": [">", 9]}]}}', "--event", event).stdout
        == "false\n"
    )
    bad = run_cli("test-pattern", "--pattern", '{"detail": {"n": [{"numeric": [">"]}]}}', "--event", event)
    assert bad.returncode == 2 and "invalid pattern" in bad.stderr


def test_schema_is_generated_from_the_models() -> None:
    schema = json.loads(run_cli("schema").stdout)
    text = json.dumps(schema)
    assert "maximum_retry_attempts" in text and "settle_time" in text and "misfire" in text


def test_json_logs_and_graceful_stop_on_sigint(tmp_path: Path) -> None:
    config = {
        "checkpoints": "memory://",
        "functions": {"f": {"handler": "functions.recorder.noop"}},
        "mappings": [{"function": "f", "source": {"type": "files", "path": str(tmp_path / "in")}}],
    }
    with HubProcess(tmp_path, config) as hub:
        hub.start("--log-format", "json", ready='"message": "hub running"')
        assert hub.stop(signal.SIGINT) == 0
        lines = [json.loads(line) for line in hub.log().splitlines()]
        assert lines[-1]["message"] == "hub stopped"
        assert {"time", "level", "logger", "message"} <= set(lines[0])


def test_every_sample_event_has_the_aws_shape() -> None:
    """`hub events` samples have AWS's envelope and record keys (map keys that are data, such as attribute or
    queue names, differ; DynamoDB's userIdentity appears on TTL deletes only)."""
    samples = {
        "files": "s3-event.json",
        "s3": "s3-event.json",
        "schedule": "scheduled-event.json",
        "sqs": "sqs-event.json",
        "kinesis": "kinesis-event.json",
        "dynamodb": "dynamodb-event.json",
        "rabbitmq": "rabbitmq-event.json",
        "kafka": "kafka-event.json",
    }

    def first_record(event: dict) -> dict:
        for envelope in ("Records", "records", "rmqMessagesByQueue"):
            if envelope in event:
                value = event[envelope]
                return value[0] if isinstance(value, list) else next(iter(value.values()))[0]
        return event

    for source, sample in samples.items():
        expected = json.loads((SAMPLES / sample).read_text())
        expected.pop("eventSourceArn", None) if source == "kafka" else None  # self-managed Kafka has none
        got = json.loads(run_cli("events", source).stdout)
        assert set(got) == set(expected), source
        got_record, expected_record = first_record(got), first_record(expected)
        optional = {"userIdentity"} if source == "dynamodb" else set()
        assert set(got_record) == set(expected_record) - optional, source
        for key, value in expected_record.items():
            if key in got_record and isinstance(value, dict):
                assert isinstance(got_record[key], dict), (source, key)
                if key in ("s3", "kinesis", "dynamodb", "basicProperties", "attributes"):
                    assert set(got_record[key]) >= set(value) - {"versionId"}, (source, key)
