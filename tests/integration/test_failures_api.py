"""The failure destinations' API of a running hub, against real brokers: what sits in an SQS queue, an S3 bucket, a
Kafka topic and a file is listed without being consumed; a replay invokes the function again with each chosen
record's event (rebuilt from the document, or read again from the stream by position) and removes what succeeded;
replays need the token, a JSON body and the endpoint's own origin."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures_aws import (
    boto,
    connection,
    create_bucket,
    create_queue,
    create_stream,
    free_port,
    put_records,
)
from tests.fixtures_kafka import create_topic, produce, unique
from tests.helpers import HubProcess, read_jsonl, wait_for


def call(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})} if body is not None else dict(headers or {})
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def failures(base: str, mapping: str) -> dict[str, Any]:
    code, answer = call(f"{base}/mappings/{mapping}/failures")
    assert code == 200, answer
    return dict(answer)


def replay(base: str, mapping: str, ids: list[str], token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    code, job = call(f"{base}/mappings/{mapping}/failures/replay", "POST", {"ids": ids}, headers)
    assert code == 202, job

    def finished() -> dict[str, Any] | None:
        answer = call(f"{base}/replays/{job['id']}")[1]
        return dict(answer) if answer["state"] != "running" else None

    return wait_for(finished, 60, "the replay to finish", every=0.1)


def picky(tmp_path: Path) -> dict[str, Any]:
    return {
        "handler": "functions.recorder.until_marker",
        "environment": {"MARKER_FILE": str(tmp_path / "ready")},
    }


def kinesis_data(call: dict[str, Any]) -> list[str]:
    return [base64.b64decode(r["kinesis"]["data"]).decode() for r in call["event"].get("Records", [])]


def test_sqs_and_s3_destinations_of_a_kinesis_stream(tmp_path: Path, moto: str) -> None:
    port, out = free_port(), tmp_path / "calls.jsonl"
    base = f"http://127.0.0.1:{port}"
    by_position, with_payload = create_stream(moto), create_stream(moto)
    queue, bucket = create_queue(moto), create_bucket(moto)

    def kinesis(stream: str) -> dict[str, Any]:
        return {
            "type": "kinesis",
            "stream_name": stream,
            "starting_position": "TRIM_HORIZON",
            "connection": connection(moto),
        }

    config = {
        "checkpoints": "memory://",
        "admin": {"listen": f"127.0.0.1:{port}"},
        "functions": {"picky": picky(tmp_path)},
        "mappings": [
            {
                "name": "positions",
                "function": "picky",
                "source": kinesis(by_position),
                "batch_size": 3,
                "maximum_batching_window": "10s",  # the three records in one batch
                "maximum_retry_attempts": 0,
                "destination_config": {
                    "on_failure": {"type": "sqs", "queue_url": queue, "connection": connection(moto)}
                },
            },
            {
                "name": "payloads",
                "function": "picky",
                "source": kinesis(with_payload),
                "maximum_retry_attempts": 0,
                "destination_config": {"on_failure": {"type": "s3", "bucket": bucket, "connection": connection(moto)}},
            },
        ],
    }
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready="admin endpoint")
        put_records(moto, by_position, [("k", b"p0"), ("k", b"p1"), ("k", b"p2")])
        put_records(moto, with_payload, [("k", b"s0")])
        wait_for(lambda: failures(base, "positions")["total"] >= 1, 30, "the SQS failure record")
        wait_for(lambda: failures(base, "payloads")["total"] == 1, 30, "the S3 failure record")

        listed = failures(base, "positions")
        assert listed["destination"] == "sqs" and listed["total"] == 1
        (entry,) = listed["failures"]
        assert entry["replay"] == "source" and entry["records"] == 3
        assert entry["condition"] == "RetryAttemptsExhausted" and entry["summary"].startswith("shard shardId-")
        assert failures(base, "positions")["total"] == 1  # listing consumed nothing
        assert queue not in json.dumps(listed)  # the destination by its type only

        (s3_entry,) = failures(base, "payloads")["failures"]
        assert s3_entry["replay"] == "event" and s3_entry["records"] == 1

        failed = replay(base, "positions", [entry["id"]])  # the marker is not there yet: fails, stays
        assert failed["state"] == "finished" and failed["failed"] == 1 and failed["done"] == 0
        assert "not ready" in failed["results"][0]["error"]
        assert wait_for(lambda: failures(base, "positions")["total"] == 1, 20, "the record back in the queue")

        (tmp_path / "ready").write_text("")
        done = replay(base, "positions", [entry["id"]])
        assert (done["total"], done["done"], done["failed"], done["state"]) == (1, 1, 0, "finished")
        assert [kinesis_data(c) for c in read_jsonl(out)] == [["p0", "p1", "p2"]]  # read again from the stream
        assert failures(base, "positions")["total"] == 0
        assert boto(moto, "sqs").receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages") is None

        done = replay(base, "payloads", [s3_entry["id"], "aws/lambda/payloads/nothing-here"])
        assert (done["done"], done["failed"]) == (1, 1)
        assert done["results"][1]["error"] == "not in the destination any more"
        assert kinesis_data(read_jsonl(out)[-1]) == ["s0"]
        assert boto(moto, "s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0
        assert hub.stop() == 0


def test_kafka_topic_and_file_destinations_of_kafka_mappings(tmp_path: Path, tansu: str) -> None:
    port, out = free_port(), tmp_path / "calls.jsonl"
    base = f"http://127.0.0.1:{port}"
    orders, audit, failed_topic = unique("orders"), unique("audit"), unique("failed")
    for topic in (orders, audit, failed_topic):
        create_topic(tansu, topic)

    def kafka(topic: str) -> dict[str, Any]:
        return {
            "type": "kafka",
            "bootstrap_servers": tansu,
            "topic": topic,
            "starting_position": "TRIM_HORIZON",
            "consumer_group_id": unique("group"),
        }

    config = {
        "checkpoints": "memory://",
        "admin": {"listen": f"127.0.0.1:{port}"},
        "functions": {"picky": picky(tmp_path)},
        "mappings": [
            {
                "name": "orders",
                "function": "picky",
                "source": kafka(orders),
                "maximum_retry_attempts": 0,
                "destination_config": {
                    "on_failure": {"type": "kafka", "bootstrap_servers": tansu, "topic": failed_topic}
                },
            },
            {
                "name": "audit",
                "function": "picky",
                "source": kafka(audit),
                "maximum_retry_attempts": 0,
                "destination_config": {"on_failure": {"type": "file", "path": str(tmp_path / "audit.jsonl")}},
            },
        ],
    }
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready="admin endpoint")
        produce(tansu, orders, [(0, b"k1", b'{"id": "o1"}', []), (0, b"k2", b'{"id": "o2"}', [])])
        produce(tansu, audit, [(0, None, b'{"id": "a1"}', [])])
        wait_for(lambda: failures(base, "orders")["total"] == 2, 30, "two failure records in the topic")
        wait_for(lambda: failures(base, "audit")["total"] == 1, 30, "the audit failure record in the file")

        listed = failures(base, "orders")
        assert listed["destination"] == "kafka"
        assert [f["id"] for f in listed["failures"]] == ["0:0", "0:1"]
        assert all(f["replay"] == "event" for f in listed["failures"])
        (audit_entry,) = failures(base, "audit")["failures"]
        assert audit_entry["replay"] == "source" and "offset 0..0" in audit_entry["summary"]

        (tmp_path / "ready").write_text("")
        done = replay(base, "orders", ["0:1"])
        assert (done["done"], done["failed"]) == (1, 0)
        assert [f["id"] for f in failures(base, "orders")["failures"]] == ["0:0"]  # replayed: hidden
        again = replay(base, "orders", ["0:1"])
        assert again["failed"] == 1 and again["results"][0]["error"] == "not in the destination any more"

        done = replay(base, "audit", [audit_entry["id"]])
        assert (done["done"], done["failed"]) == (1, 0)
        assert failures(base, "audit")["total"] == 0 and read_jsonl(tmp_path / "audit.jsonl") == []
        values = [
            json.loads(base64.b64decode(r["value"]))["id"]
            for c in read_jsonl(out)
            for records in c["event"]["records"].values()
            for r in records
        ]
        assert values == ["o2", "a1"]  # the record of the topic's document, then the one read again by offset
        assert hub.stop() == 0


def test_replays_need_the_token_a_json_body_and_this_origin(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = {
        "checkpoints": "memory://",
        "admin": {"listen": f"127.0.0.1:{port}", "token": "replay-t0ken"},
        "functions": {"picky": picky(tmp_path)},
        "mappings": [
            {
                "name": "inbox",
                "function": "picky",
                "source": {"type": "files", "path": str(tmp_path / "in")},
                "maximum_retry_attempts": 0,
                "destination_config": {"on_failure": {"type": "file", "path": str(tmp_path / "failed.jsonl")}},
            },
            {"name": "plain", "function": "picky", "source": {"type": "files", "path": str(tmp_path / "plain")}},
        ],
    }
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(tmp_path / "calls.jsonl")}) as hub:
        hub.start(ready="admin endpoint")
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / "x.txt").write_text("x")
        wait_for(lambda: failures(base, "inbox")["total"] == 1, 30, "the failure record")
        (entry,) = failures(base, "inbox")["failures"]
        url = f"{base}/mappings/inbox/failures/replay"
        assert call(url, "POST", {"ids": [entry["id"]]})[0] == 401
        assert call(url, "POST", {"ids": [entry["id"]]}, {"Authorization": "Bearer wrong"})[0] == 401
        elsewhere = {"Authorization": "Bearer replay-t0ken", "Origin": "http://evil.example"}
        assert call(url, "POST", {"ids": [entry["id"]]}, elsewhere)[0] == 403
        plain = urllib.request.Request(
            url, data=b"ids=x", method="POST", headers={"Authorization": "Bearer replay-t0ken"}
        )
        try:
            urllib.request.urlopen(plain, timeout=10)
            raise AssertionError("a form body was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 415
        assert call(f"{base}/mappings/plain/failures")[0] == 404  # no destination
        assert call(f"{base}/mappings/nope/failures")[0] == 404
        assert failures(base, "inbox")["total"] == 1  # nothing was replayed
        done = replay(base, "inbox", [entry["id"]], token="replay-t0ken")
        assert done["failed"] == 1  # the marker is missing: it failed again, and stays
        assert failures(base, "inbox")["total"] == 1
        assert hub.stop() == 0
    assert "replay-t0ken" not in hub.log()


def test_a_redis_stream_destination(tmp_path: Path, redis_url: str) -> None:
    import redis

    port, out = free_port(), tmp_path / "calls.jsonl"
    base = f"http://127.0.0.1:{port}"
    stream = unique("failed")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.xadd(stream, {"body": "{}", "mapping": "another", "lane": "x"})  # a shared stream: not this mapping's
    config = {
        "checkpoints": "memory://",
        "admin": {"listen": f"127.0.0.1:{port}"},
        "functions": {"picky": picky(tmp_path)},
        "mappings": [
            {
                "name": "uploads",
                "function": "picky",
                "source": {"type": "files", "path": str(tmp_path / "in")},
                "maximum_retry_attempts": 0,
                "destination_config": {"on_failure": {"type": "redis", "url": redis_url, "stream": stream}},
            }
        ],
    }
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready="admin endpoint")
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / "a.txt").write_text("a")
        wait_for(lambda: failures(base, "uploads")["total"] == 1, 30, "the failure entry")
        listed = failures(base, "uploads")
        (entry,) = listed["failures"]
        assert listed["destination"] == "redis" and entry["replay"] == "event"
        assert entry["summary"] == "aws:s3: a.txt" and "not ready" in entry["error"]
        (tmp_path / "ready").write_text("")
        done = replay(base, "uploads", [entry["id"]])
        assert (done["done"], done["failed"]) == (1, 0)
        assert read_jsonl(out)[0]["event"]["Records"][0]["s3"]["object"]["key"] == "a.txt"
        assert failures(base, "uploads")["total"] == 0
        assert [fields["mapping"] for _, fields in client.xrange(stream)] == ["another"]  # XDEL: only ours went
        assert hub.stop() == 0
