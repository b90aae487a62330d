"""Benchmark of the EventBridge pattern matcher behind `filter_criteria` (hub/filtering.py).

    .venv/bin/python bench/filter_bench.py            # 200,000 matches per source and measure (~15 s)
    .venv/bin/python bench/filter_bench.py --quick    # 20,000

Prints ONE JSON object on stdout. For each source shape (SQS, Kinesis) it builds realistic filter views
(what a pattern sees of a record: metadata plus the parsed JSON data), compiles a FilterSet of 5 realistic
patterns and runs the records through it, several rounds; the best round counts. It also times the records
that no pattern matches (`unmatched_records_per_s`: all 5 patterns evaluated to the end, the worst realistic
case). In the same run it measures a "ceiling": a loop that does nothing but one `dict.get` per record over
the same records, so `ratio_to_ceiling` (filter rate / ceiling rate) holds even on a noisy or slow machine.
Target: >= 100,000 records/s per source, on one core of CPython 3.11.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from common import ROOT

sys.path.insert(0, str(ROOT))

from hub.filtering import FilterSet

TARGET_RATE = 100_000.0
DISTINCT_RECORDS = 5_000
ROUNDS = 5

SQS_PATTERNS: list[Any] = [
    # orders above a threshold
    {"body": {"eventType": ["order.created", "order.updated"], "amount": [{"numeric": [">", 500]}]}},
    # high-priority messages, whatever their body
    {"messageAttributes": {"priority": {"stringValue": ["high", "critical"]}}},
    # EU customers, except cancelled or failed orders
    {
        "body": {
            "customer": {"region": [{"prefix": "eu-"}]},
            "status": [{"anything-but": ["cancelled", "failed"]}],
        }
    },
    # redeliveries of gold-tier customers' messages
    {
        "attributes": {"ApproximateReceiveCount": [{"anything-but": "1"}]},
        "body": {"customer": {"tier": [{"equals-ignore-case": "GOLD"}]}},
    },
    # urgent items from the internal network or an internal service
    {
        "body": {
            "tags": ["urgent"],
            "$or": [{"source": [{"suffix": ".internal"}]}, {"clientIp": [{"cidr": "10.0.0.0/8"}]}],
        }
    },
]

KINESIS_PATTERNS: list[Any] = [
    # temperature alarms from sensors
    {"data": {"type": ["reading"], "temperature": [{"numeric": [">=", 30, "<", 100]}]}},
    # one tenant's partition keys
    {"partitionKey": [{"prefix": "tenant-7/"}]},
    # devices in an error state, any firmware but the beta ones
    {"data": {"status": ["error", "fault"], "device": {"firmware": [{"anything-but": {"prefix": "beta-"}}]}}},
    # errors logged by the payment APIs
    {"data": {"type": ["log"], "service": [{"wildcard": "payment-*-api"}], "level": ["ERROR", "FATAL"]}},
    # readings that carry no calibration but have a location
    {"data": {"calibration": [{"exists": False}], "location": {"lat": [{"exists": True}]}}},
]


def uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def sqs_view(rng: random.Random) -> dict[str, Any]:
    ip = ".".join(str(n) for n in (rng.choice([10, 81, 192]), rng.randrange(256), rng.randrange(256), 7))
    body = {
        "eventType": rng.choice(["order.created", "order.updated", "order.shipped", "payment.received", "refund"]),
        "orderId": uid(rng),
        "amount": round(rng.uniform(1, 1000), 2),
        "currency": rng.choice(["EUR", "USD", "GBP"]),
        "status": rng.choice(["new", "paid", "cancelled", "failed", "failed", "shipped"]),
        "customer": {
            "id": f"c-{rng.randrange(100000)}",
            "region": rng.choice(["eu-west-1", "us-west-2", "us-east-1", "ap-south-1", "sa-east-1"]),
            "tier": rng.choice(["gold", "Silver", "bronze", "bronze"]),
        },
        "items": [
            {"sku": f"sku-{rng.randrange(1000)}", "qty": rng.randrange(1, 5)} for _ in range(rng.randrange(1, 4))
        ],
        "tags": rng.sample(["urgent", "gift", "bulk", "vip", "b2b", "promo"], rng.randrange(0, 3)),
        "source": rng.choice(["web", "mobile", "billing.internal", "partner"]),
        "clientIp": ip,
    }
    return {
        "messageId": uid(rng),
        "receiptHandle": "AQEB" + uid(rng),
        "attributes": {
            "ApproximateReceiveCount": rng.choice(["1", "1", "1", "2", "3"]),
            "SentTimestamp": str(1_700_000_000_000 + rng.randrange(10**9)),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(1_700_000_000_000 + rng.randrange(10**9)),
        },
        "messageAttributes": {
            "priority": {
                "stringValue": rng.choice(["low", "normal", "normal", "normal", "high"]),
                "dataType": "String",
            }
        },
        "md5OfBody": uuid.UUID(int=rng.getrandbits(128)).hex,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
        "awsRegion": "us-east-1",
        "body": body,
    }


def kinesis_view(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["reading", "reading", "log", "heartbeat"])
    data: dict[str, Any] = {
        "type": kind,
        "deviceId": f"dev-{rng.randrange(5000)}",
        "ts": 1_700_000_000 + rng.randrange(10**6),
    }
    if kind == "reading":
        data["temperature"] = round(rng.uniform(-10, 120), 1)
        data["humidity"] = rng.randrange(100)
        data["status"] = rng.choice(["ok", "ok", "ok", "ok", "error"])
        data["device"] = {"firmware": rng.choice(["1.2.0", "1.3.1", "beta-2.0"]), "model": "T-1000"}
        data["location"] = {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)}
        if rng.random() < 0.8:
            data["calibration"] = {"offset": 0.1}
    elif kind == "log":
        data["service"] = rng.choice(["payment-eu-api", "payment-us-api", "search-api", "payment-worker"])
        data["level"] = rng.choice(["DEBUG", "INFO", "INFO", "WARN", "ERROR"])
        data["message"] = f"request handled in {rng.randrange(500)} ms"
    return {
        "partitionKey": f"tenant-{rng.randrange(20)}/{data['deviceId']}",
        "sequenceNumber": str(49590338271490256608559692538361571095921575989136588898 + rng.randrange(10**9)),
        "approximateArrivalTimestamp": 1_700_000_000.0 + rng.random() * 1e6,
        "kinesisSchemaVersion": "1.0",
        "data": data,
    }


def rate(function: Callable[[Any], bool], records: list[dict[str, Any]], total: int) -> tuple[float, int]:
    """Calls per second over `total` calls cycling through `records` (best of ROUNDS), and the true count."""
    repeats, rest = divmod(total, len(records))
    work = records * repeats + records[:rest]
    best = float("inf")
    kept = 0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        kept = 0
        for record in work:
            if function(record):
                kept += 1
        best = min(best, time.perf_counter() - start)
    return total / best, kept


def ceiling(record: dict[str, Any]) -> bool:
    return record.get("body") is not None


def measure(patterns: list[Any], make: Callable[[random.Random], dict[str, Any]], total: int) -> dict[str, Any]:
    rng = random.Random(42)
    records = [make(rng) for _ in range(DISTINCT_RECORDS)]
    filters = FilterSet.compile(patterns)
    filter_rate, kept = rate(filters.matches, records, total)
    ceiling_rate, _ = rate(ceiling, records, total)
    unmatched = [r for r in records if not filters.matches(r)]
    unmatched_rate, _ = rate(filters.matches, unmatched, total)
    return {
        "records": total,
        "records_per_s": round(filter_rate),
        "matched_fraction": round(kept / total, 3),
        "unmatched_records_per_s": round(unmatched_rate),
        "ceiling_records_per_s": round(ceiling_rate),
        "ratio_to_ceiling": round(filter_rate / ceiling_rate, 4),
        "meets_target": min(filter_rate, unmatched_rate) >= TARGET_RATE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark of the EventBridge pattern matcher.")
    parser.add_argument("--quick", action="store_true", help="20,000 matches per measure instead of 200,000")
    total = 20_000 if parser.parse_args().quick else 200_000
    result = {
        "benchmark": "filter_bench",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "patterns": len(SQS_PATTERNS),
        "target_records_per_s": TARGET_RATE,
        "sources": {
            "sqs": measure(SQS_PATTERNS, sqs_view, total),
            "kinesis": measure(KINESIS_PATTERNS, kinesis_view, total),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
