"""/metrics with AWS's names, /invocations and /history of a running hub (a real process, SQS on moto): after a
known number of records (10 sent, 2 filtered out, 1 failing and given up to the destination) every count has the
value AWS would show."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures_aws import boto, connection, create_queue
from tests.fixtures_redis import free_port
from tests.helpers import HubProcess, read_jsonl, wait_for


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def metrics(base: str) -> dict[str, float]:
    """Every sample of /metrics, `name{labels}` -> value."""
    found = {}
    for line in get(f"{base}/metrics").splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_counts_with_aws_names_after_a_known_number_of_records(tmp_path: Path, moto: str) -> None:
    queue = create_queue(moto)
    port, out, failures = free_port(), tmp_path / "calls.jsonl", tmp_path / "failures.jsonl"
    config = {
        "checkpoints": "memory://",
        "admin": {"listen": f"127.0.0.1:{port}"},
        "functions": {"marked": {"handler": "functions.sqs_testing.fails_on_marked", "timeout": "10s"}},
        "mappings": [
            {
                "name": "counted",
                "function": "marked",
                "batch_size": 1,
                "max_receive_count": 1,  # the failing message goes to the destination at its first failure
                "filter_criteria": [{"body": {"kind": ["keep"]}}],
                "destination_config": {"on_failure": {"type": "file", "path": str(failures)}},
                "source": {"type": "sqs", "queue_url": queue, "connection": connection(moto), "wait_time": 1},
            }
        ],
    }
    bodies = [{"n": n, "kind": "skip" if n in (3, 6) else "keep", "fail": n == 8} for n in range(10)]
    base = f"http://127.0.0.1:{port}"
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready="admin endpoint")
        sqs = boto(moto, "sqs")
        for n, body in enumerate(bodies):
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body), MessageAttributes=secret_attribute(n))
        key = '{mapping="counted"}'
        wait_for(lambda: metrics(base).get(f"aws_lambda_deleted_event_count_total{key}") == 10, 30, "10 deleted")
        found = metrics(base)
        assert {name: found[f"aws_lambda_{name}_total{key}"] for name in COUNTS} == COUNTS
        function = '{function="marked"}'
        assert found[f"aws_lambda_invocations_total{function}"] == 8
        assert found[f"aws_lambda_errors_total{function}"] == 1
        assert found[f"aws_lambda_throttles_total{function}"] == 0
        assert found[f"aws_lambda_concurrent_executions{function}"] == 0
        assert found['aws_lambda_duration_seconds_bucket{function="marked",le="+Inf"}'] == 8
        assert found[f"aws_lambda_duration_seconds_count{function}"] == 8
        page = get(f"{base}/metrics").splitlines()
        for name, aws_name in HELP.items():  # who searches the page for AWS's name finds the metric
            assert any(line.startswith(f"# HELP {name} {aws_name} ") for line in page), name
        # the queue's lag, once the hub asked (every 5 s): nothing waiting
        wait_for(lambda: found_lag(base) == {"backlog": 0, "oldest_message_age_s": 0.0}, 30, "an empty queue's lag")
        assert metrics(base)[f"aws_sqs_approximate_number_of_messages_visible{key}"] == 0

        recent = json.loads(get(f"{base}/invocations?mapping=counted&limit=50"))
        assert len(recent) == 8 and sorted(e["outcome"] for e in recent) == ["error"] + ["success"] * 7
        assert [e["started"] for e in recent] == sorted((e["started"] for e in recent), reverse=True)
        [failed] = [e for e in recent if e["outcome"] == "error"]
        assert failed["error"] == "ValueError: a message is marked to fail"
        assert failed["function"] == "marked" and failed["mapping"] == "counted"
        assert failed["records"] == 1 and failed["attempt"] == 1 and failed["duration_ms"] >= 0
        assert set(failed) == {
            "request_id",
            "function",
            "mapping",
            "started",
            "duration_ms",
            "outcome",
            "error",
            "records",
            "attempt",
        }
        assert len({e["request_id"] for e in recent}) == 8
        assert "do-not-show" not in get(f"{base}/invocations?mapping=counted")  # never a payload
        assert len(json.loads(get(f"{base}/invocations?mapping=counted&limit=3"))) == 3
        assert json.loads(get(f"{base}/invocations?mapping=nothing")) == []

        def history() -> list[dict[str, Any]]:
            answer = json.loads(get(f"{base}/history"))
            assert answer["interval_s"] == 10
            samples: list[dict[str, Any]] = answer["mappings"]["counted"]
            return samples

        wait_for(lambda: any(s["polled_per_s"] > 0 for s in history()), 40, "a sample of the records polled")
        for sample in history():
            assert set(sample) == {"t", "polled_per_s", "invoked_per_s", "failed_per_s", "lag"}
        assert hub.stop() == 0
    assert len(read_jsonl(failures)) == 1


COUNTS = {
    "polled_event_count": 10,
    "filtered_out_event_count": 2,
    "invoked_event_count": 8,
    "failed_invoke_event_count": 1,
    "dropped_event_count": 0,
    "deleted_event_count": 10,  # 7 processed, 2 filtered out, 1 handed to the destination
    "on_failure_destination_delivered_event_count": 1,
}


HELP = {
    "aws_lambda_polled_event_count_total": "PolledEventCount",
    "aws_lambda_filtered_out_event_count_total": "FilteredOutEventCount",
    "aws_lambda_deleted_event_count_total": "DeletedEventCount",
    "aws_lambda_on_failure_destination_delivered_event_count_total": "OnFailureDestinationDeliveredEventCount",
    "aws_lambda_duration_seconds": "Duration",
    "aws_lambda_throttles_total": "Throttles",
    "aws_lambda_concurrent_executions": "ConcurrentExecutions",
    "aws_sqs_approximate_age_of_oldest_message_seconds": "ApproximateAgeOfOldestMessage",
}


def secret_attribute(n: int) -> dict[str, Any]:
    return {"note": {"DataType": "String", "StringValue": f"do-not-show-{n}"}}


def found_lag(base: str) -> dict[str, Any]:
    status = json.loads(get(f"{base}/status"))
    lag: dict[str, Any] = status["mappings"][0]["lag"]
    return lag
