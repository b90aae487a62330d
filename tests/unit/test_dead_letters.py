"""Dead letters: Lambda's function DLQ message and EventBridge Scheduler's dead-letter event, as the builders make
them, and the line a `file` dead-letter queue writes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.schedule.source import PAYLOAD_LIMIT, ScheduleConfig, ScheduleSource
from hub.checkpoints import open_store
from hub.config import ConfigError, FileDestination, load_config
from hub.deadletter import GiveUp, lambda_dead_letter
from hub.destinations import FileSink
from hub.runtimes import Result, error_payload
from hub.source import Document, SourceContext

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:nightly"


def failed(message: str = "boom", error_type: str = "ValueError", error: str = "Unhandled") -> Result:
    return Result(False, error_payload(error_type, message, ["line 1"]), 0.01, "req-123", error)


def test_a_function_error_is_code_200_with_the_error_message() -> None:
    event = {"Records": [{"s3": {"object": {"key": "bad.txt"}}}]}
    document = lambda_dead_letter(event, GiveUp(3, failed("cannot process bad.txt"), "RetriesExhausted", ARN))
    assert document.body is event  # the original event, unmodified
    assert document.attributes == {
        "RequestID": {"DataType": "String", "StringValue": "req-123"},
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "cannot process bad.txt"},
    }


def test_a_throttled_or_never_invoked_event_is_code_429() -> None:
    throttled = failed("Rate Exceeded.", "TooManyRequestsException", "Throttled")
    assert GiveUp(1, throttled, "ZeroReservedConcurrency", ARN).status_code == 429
    never = GiveUp(0, None, "EventAgeExceeded", ARN)
    assert never.status_code == 429
    assert never.error_message == "the event is older than maximum_event_age"
    assert never.error_type == "EventAgeExceeded"
    assert never.request_id != GiveUp(0, None, "EventAgeExceeded", ARN).request_id  # a fresh id each time


def test_the_error_message_is_cut_to_one_kilobyte_between_characters() -> None:
    message = GiveUp(3, failed("é" * 1000), "RetriesExhausted", ARN).error_message
    assert len(message.encode()) == 1024
    assert message == "é" * 512
    assert GiveUp(3, failed("x" * 1024), "RetriesExhausted", ARN).error_message == "x" * 1024


def schedule(tmp_path: Path, **config: Any) -> ScheduleSource:
    model = ScheduleConfig.model_validate({"type": "schedule", "expression": "rate(1 minute)", **config})
    context = SourceContext("nightly-job", open_store("memory://"), "eu-west-1", "123456789012")
    return ScheduleSource(model, context)


FIRE = datetime(2026, 3, 4, 5, 6, 0, tzinfo=UTC)


def test_the_scheduler_dead_letter_is_the_last_request_body_with_schedulers_attributes(tmp_path: Path) -> None:
    source = schedule(
        tmp_path,
        input={"job": "nightly", "attempt": "<aws.scheduler.attempt-number>", "id": "<aws.scheduler.execution-id>"},
    )
    record = source._record(FIRE)
    document = source.dead_letter([record], GiveUp(3, failed("no database"), "RetriesExhausted", ARN))
    last_request = source.render([record], 3)
    assert document.body == last_request
    assert document.body["attempt"] == "3"
    attributes = {name: (v["DataType"], v["StringValue"]) for name, v in (document.attributes or {}).items()}
    assert attributes == {
        "ERROR_CODE": ("String", "ValueError"),
        "ERROR_MESSAGE": ("String", "no database"),
        "EXECUTION_ID": ("String", last_request["id"]),
        "EXHAUSTED_RETRY_CONDITION": ("String", "MaximumRetryAttempts"),
        "IS_PAYLOAD_TRUNCATED": ("String", "false"),
        "RETRY_ATTEMPTS": ("Number", "2"),
        "SCHEDULED_TIME": ("String", "2026-03-04T05:06:00Z"),
        "SCHEDULE_ARN": ("String", "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/nightly-job"),
        "TARGET_ARN": ("String", ARN),
    }
    assert source.render([record], 2)["id"] != last_request["id"]  # one execution id per attempt


def test_the_exhausted_condition_names_the_retry_policy_limit_and_only_for_retryable_failures(
    tmp_path: Path,
) -> None:
    source = schedule(tmp_path)
    record = source._record(FIRE)

    def condition(give_up: GiveUp) -> str | None:
        attributes = source.dead_letter([record], give_up).attributes or {}
        value = attributes.get("EXHAUSTED_RETRY_CONDITION")
        return value["StringValue"] if value else None

    assert condition(GiveUp(2, failed(), "EventAgeExceeded", ARN)) == "MaximumEventAgeInSeconds"
    throttled = failed("Rate Exceeded.", "TooManyRequestsException", "Throttled")
    assert condition(GiveUp(1, throttled, "ZeroReservedConcurrency", ARN)) is None
    # without `input`, the request body is the Scheduled Event envelope
    assert source.dead_letter([record], GiveUp(1, failed(), "RetriesExhausted", ARN)).body == record.payload


def test_a_body_too_large_for_sqs_is_truncated_and_says_so(tmp_path: Path) -> None:
    source = schedule(tmp_path, input={"blob": "x" * (PAYLOAD_LIMIT + 10)})
    document = source.dead_letter([source._record(FIRE)], GiveUp(1, failed(), "RetriesExhausted", ARN))
    assert document.body == ('{"blob":"' + "x" * PAYLOAD_LIMIT)[:PAYLOAD_LIMIT]
    assert (document.attributes or {})["IS_PAYLOAD_TRUNCATED"]["StringValue"] == "true"


def test_a_file_dead_letter_queue_writes_body_and_attributes_per_line(tmp_path: Path) -> None:
    path = tmp_path / "dlq" / "dead.jsonl"
    sink = FileSink(FileDestination(type="file", path=str(path)))
    letter = lambda_dead_letter({"a": 1}, GiveUp(3, failed(), "RetriesExhausted", ARN))
    asyncio.run(sink.send([letter, Document({"requestContext": {}})]))
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first == {"Body": {"a": 1}, "MessageAttributes": letter.attributes}
    assert second == {"requestContext": {}}  # a failure record stays as it was


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    return path


def test_dead_letter_configs_load_and_a_destination_without_attributes_is_refused(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "functions:\n"
            "  fn:\n"
            "    handler: functions.recorder.fail\n"
            "    dead_letter_config: {type: sqs, queue_name: dlq}\n"
            "mappings:\n"
            "  - function: fn\n"
            "    source:\n"
            "      type: schedule\n"
            "      expression: rate(1 minute)\n"
            "      dead_letter_config: {type: file, path: dead.jsonl}\n",
        )
    )
    assert config.functions["fn"].dead_letter_config.queue_name == "dlq"
    assert config.mappings[0].source.dead_letter_config.path == "dead.jsonl"
    with pytest.raises(ConfigError) as refused:
        load_config(
            write(
                tmp_path,
                "functions:\n"
                "  fn:\n"
                "    handler: functions.recorder.fail\n"
                "    dead_letter_config: {type: s3, bucket: b}\n"
                "mappings: [{function: fn, source: {type: files, path: inbox}}]\n",
            )
        )
    assert "hub.yaml:4:" in str(refused.value)
    assert "functions.fn.dead_letter_config.type: 's3' cannot be a dead-letter queue" in str(refused.value)
    with pytest.raises(ConfigError) as missing:
        load_config(
            write(
                tmp_path,
                "functions:\n"
                "  fn:\n"
                "    handler: functions.recorder.fail\n"
                "    dead_letter_config: {type: file}\n"
                "mappings: [{function: fn, source: {type: files, path: inbox}}]\n",
            )
        )
    assert "functions.fn.dead_letter_config.path: Field required" in str(missing.value)
