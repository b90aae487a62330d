"""Lag as the hub measures it, against real brokers: a Kafka mapping's OffsetLag grows with a backlog while its
function is held, shows in /status, /metrics and `hub status`, and drains to 0 once the function goes on; the lag
each queue source tells of itself (SQS, Redis streams, RabbitMQ) and a stream's IteratorAge (Kinesis)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures_kafka import create_topic, produce, unique
from tests.fixtures_redis import free_port
from tests.helpers import HubProcess, read_jsonl, run_cli, wait_for


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def mapping_status(base: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in json.loads(get(f"{base}/status"))["mappings"] if m["name"] == name)
    return found


def metric(base: str, name: str, mapping: str) -> float | None:
    """The value of a metric of one mapping on /metrics, None when it is not there."""
    for line in get(f"{base}/metrics").splitlines():
        if line.startswith(f'{name}{{mapping="{mapping}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return None


def messages(prefix: str, count: int) -> list[Any]:
    return [(0, None, json.dumps({"id": f"{prefix}{i}"}).encode()) for i in range(count)]


def test_kafka_offset_lag_grows_with_a_backlog_and_drains_to_zero(tmp_path: Path, tansu: str) -> None:
    topic = unique("lagging")
    create_topic(tansu, topic)
    port, out, hold = free_port(), tmp_path / "calls.jsonl", tmp_path / "hold"
    hold.write_text("held")
    config = {
        "checkpoints": "memory://",
        "admin": {"listen": f"127.0.0.1:{port}"},
        "functions": {
            "held": {"handler": "functions.recorder.held", "timeout": "150s", "environment": {"HOLD_FILE": str(hold)}}
        },
        "mappings": [
            {
                "name": "orders",
                "function": "held",
                "batch_size": 10,
                "source": {
                    "type": "kafka",
                    "bootstrap_servers": tansu,
                    "topic": topic,
                    "starting_position": "TRIM_HORIZON",
                    "consumer_group_id": unique("group"),
                },
            }
        ],
    }
    base = f"http://127.0.0.1:{port}"
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready="admin endpoint")
        hub.wait_log("partitions assigned")
        # one record per produce request: tansu's high watermark is then the partition's end whatever it reports
        produce(tansu, topic, messages("a", 20), one_by_one=True)
        wait_for(lambda: mapping_status(base, "orders")["lag"].get("offset_lag") == 20, 30, "an offset lag of 20")
        produce(tansu, topic, messages("b", 30), one_by_one=True)
        wait_for(lambda: mapping_status(base, "orders")["lag"].get("offset_lag") == 50, 30, "the lag to grow to 50")
        status = mapping_status(base, "orders")
        assert status["lanes_detail"] == {f"{topic}-0": {"offset_lag": 50}}
        assert status["last_minute"]["polled"] >= 10 and status["last_minute"]["polled_per_s"] > 0
        assert status["last_minute"]["invoked"] == 10, hub.log()  # the first batch, held
        assert metric(base, "aws_lambda_offset_lag", "orders") == 50.0
        shown = run_cli("status", "--url", base)
        assert shown.returncode == 0, shown.stderr
        [row] = [line for line in shown.stdout.splitlines() if line.startswith("orders")]
        assert "50 records" in row and re.search(r"\d+\.\d/s", row), shown.stdout
        hold.unlink()  # the function goes on: the backlog drains
        wait_for(lambda: len(read_jsonl(out)) == 5, 60, "the 50 records, in 5 batches")
        wait_for(lambda: mapping_status(base, "orders")["lag"].get("offset_lag") == 0, 30, "the lag to drain to 0")
        assert metric(base, "aws_lambda_offset_lag", "orders") == 0.0
        assert metric(base, "aws_lambda_polled_event_count_total", "orders") == 50.0
        assert hub.stop() == 0
