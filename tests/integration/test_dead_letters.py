"""Dead-letter queues end to end: a real hub process whose asynchronous invocations always fail, a real folder
or schedule, and a `file` or `sqs` (moto_server) dead-letter queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures_aws import boto, connection, create_queue
from tests.helpers import HubProcess, read_jsonl, wait_for

ATTRIBUTE_TYPES = {"RequestID": "String", "ErrorCode": "Number", "ErrorMessage": "String"}


def failing_files(tmp: Path, out: Path, dead_letter: dict[str, Any], **mapping: Any) -> dict[str, Any]:
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {
            "fn": {
                "handler": "functions.recorder.fail",
                "timeout": "10s",
                "environment": {"RECORDER_OUT": str(out)},
                "dead_letter_config": dead_letter,
            }
        },
        "mappings": [
            {
                "name": "inbox",
                "function": "fn",
                "maximum_retry_attempts": 1,
                "retry_delay": "10ms",
                "source": {"type": "files", "path": str(tmp / "inbox")},
                **mapping,
            }
        ],
    }


def receive(url: str, queue_url: str, count: int) -> list[dict[str, Any]]:
    """`count` messages of the queue, with their attributes (waits up to 20 s)."""
    sqs = boto(url, "sqs")
    got: list[dict[str, Any]] = []

    def more() -> bool:
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        got.extend(answer.get("Messages", []))
        return len(got) >= count

    wait_for(more, timeout=20, what=f"{count} messages in {queue_url}")
    return got


def plain(attributes: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {name: (value["DataType"], value["StringValue"]) for name, value in attributes.items()}


def test_a_given_up_file_event_reaches_the_functions_file_dlq_and_the_on_failure_destination(tmp_path: Path) -> None:
    out, dead, failures = tmp_path / "calls.jsonl", tmp_path / "dead.jsonl", tmp_path / "failures.jsonl"
    config = failing_files(
        tmp_path,
        out,
        {"type": "file", "path": str(dead)},
        destination_config={"on_failure": {"type": "file", "path": str(failures)}},
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        (tmp_path / "inbox" / "bad.txt").write_bytes(b"poison")
        wait_for(lambda: read_jsonl(dead) and read_jsonl(failures), what="the dead letter and the failure record")
        assert hub.stop() == 0
    calls = read_jsonl(out)
    assert len(calls) == 2  # the first attempt and one retry
    (letter,) = read_jsonl(dead)
    (record,) = read_jsonl(failures)
    assert letter["Body"] == calls[0]["event"]  # the original event, unmodified
    assert plain(letter["MessageAttributes"]) == {
        "RequestID": ("String", calls[-1]["request_id"]),
        "ErrorCode": ("Number", "200"),
        "ErrorMessage": ("String", "this function always fails"),
    }
    # Lambda sends to both when both are configured: the invocation record goes to the on-failure destination
    assert record["requestContext"]["requestId"] == calls[-1]["request_id"]
    assert record["requestPayload"] == calls[0]["event"]


def test_a_given_up_file_event_reaches_the_functions_sqs_dlq(tmp_path: Path, moto: str) -> None:
    out = tmp_path / "calls.jsonl"
    queue_url = create_queue(moto)
    config = failing_files(tmp_path, out, {"type": "sqs", "queue_url": queue_url, "connection": connection(moto)})
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        hub.wait_log("watching")
        (tmp_path / "inbox" / "report.csv").write_bytes(b"a,b\n")
        (message,) = receive(moto, queue_url, 1)
        assert hub.stop() == 0
    calls = read_jsonl(out)
    assert json.loads(message["Body"]) == calls[0]["event"]
    assert plain(message["MessageAttributes"]) == {
        "RequestID": ("String", calls[-1]["request_id"]),
        "ErrorCode": ("Number", "200"),
        "ErrorMessage": ("String", "this function always fails"),
    }
    assert "gave up; sent to sqs:" in hub.log()


def test_a_given_up_fire_reaches_the_schedules_sqs_dlq_in_schedulers_format(tmp_path: Path, moto: str) -> None:
    out, dead = tmp_path / "calls.jsonl", tmp_path / "function-dead.jsonl"
    queue_url = create_queue(moto)
    config = {
        "checkpoints": f"sqlite:///{tmp_path / 'state.db'}",
        "shutdown_grace": "5s",
        "account_id": "123456789012",
        "region": "eu-west-1",
        "functions": {
            "job": {
                "handler": "functions.recorder.fail",
                "environment": {"RECORDER_OUT": str(out)},
                "dead_letter_config": {"type": "file", "path": str(dead)},
            }
        },
        "mappings": [
            {
                "name": "nightly",
                "function": "job",
                "maximum_retry_attempts": 2,  # the schedule's RetryPolicy.MaximumRetryAttempts
                "retry_delay": "10ms",
                "source": {
                    "type": "schedule",
                    "expression": "rate(1 second)",
                    "input": {
                        "job": "nightly",
                        "at": "<aws.scheduler.scheduled-time>",
                        "attempt": "<aws.scheduler.attempt-number>",
                        "execution": "<aws.scheduler.execution-id>",
                    },
                    "dead_letter_config": {"type": "sqs", "queue_url": queue_url, "connection": connection(moto)},
                },
            }
        ],
    }
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        message = receive(moto, queue_url, 1)[0]
        body = json.loads(message["Body"])
        wait_for(
            lambda: [d for d in read_jsonl(dead) if d["Body"]["at"] == body["at"]], what="the function's dead letter"
        )
        assert hub.stop() == 0
    calls = [c for c in read_jsonl(out) if c["event"]["at"] == body["at"]]  # the fire's three attempts
    assert [c["event"]["attempt"] for c in calls] == ["1", "2", "3"]
    assert body == calls[-1]["event"]  # the request body of the last attempt
    attributes = plain(message["MessageAttributes"])
    assert attributes == {
        "ERROR_CODE": ("String", "ValueError"),
        "ERROR_MESSAGE": ("String", "this function always fails"),
        "EXECUTION_ID": ("String", body["execution"]),
        "EXHAUSTED_RETRY_CONDITION": ("String", "MaximumRetryAttempts"),
        "IS_PAYLOAD_TRUNCATED": ("String", "false"),
        "RETRY_ATTEMPTS": ("Number", "2"),
        "SCHEDULED_TIME": ("String", body["at"]),
        "SCHEDULE_ARN": ("String", "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/nightly"),
        "TARGET_ARN": ("String", "arn:aws:lambda:eu-west-1:123456789012:function:job"),
    }
    # the function's own DLQ gets Lambda's format of the same give-up: the original (first) event
    (letter,) = [d for d in read_jsonl(dead) if d["Body"]["at"] == body["at"]]
    assert letter["Body"] == calls[0]["event"]
    assert plain(letter["MessageAttributes"])["RequestID"] == ("String", calls[-1]["request_id"])
