"""Benchmark of the `kinesis` source: put→handler latency through the hub, against a bare GetRecords loop.

    .venv/bin/python bench/kinesis_bench.py            # 300 records at ~20/s per reader (~40 s)
    .venv/bin/python bench/kinesis_bench.py --quick    # 60 records (~15 s)

Prints ONE JSON object on stdout; progress goes to stderr.

A moto_server on a free loopback port serves a fresh one-shard stream per reader. This process puts records
one at a time at a jittered steady rate (so puts land at every phase of the readers' poll cycle); a record's
latency is the reader's `time.time()` on seeing it minus the moment its PutRecord was called.

- hub:        `python -m hub run` with one `kinesis` mapping (defaults: batch_size 100, window 0, the default
              poll_interval) -> functions.recorder.record, which notes when the handler got the event.
- raw:        a bare aioboto3 loop (this file with `--raw-reader`): GetRecords, and when the shard is caught up
              sleep the same poll interval: the ceiling the hub's reader cannot beat with that interval.
- raw_no_wait: the same loop without the sleep (GetRecords back to back): the floor of polling itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    AWS_REGION,
    AWS_TEST_CONNECTION,
    AWS_TEST_ENV,
    AWS_TEST_KEYS,
    PYTHON,
    Child,
    child_env,
    progress,
    read_jsonl,
    start_moto,
    summary_ms,
    wait_until,
    work_dir,
)

TARGET_P50_MS = 100.0


def boto(url: str, service: str) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=url, region_name=AWS_REGION, **AWS_TEST_KEYS)


def seen(out: Path) -> dict[int, float]:
    """Record index -> when the reader saw it (first time), from JSON lines."""
    found: dict[int, float] = {}
    for entry in read_jsonl(out):
        if "event" in entry:  # functions.recorder.record
            import base64

            for record in entry["event"]["Records"]:
                i = json.loads(base64.b64decode(record["kinesis"]["data"]))["i"]
                found.setdefault(i, entry["received"])
        else:
            found.setdefault(entry["i"], entry["received"])
    return found


def produce(url: str, stream: str, count: int, rate: float) -> dict[int, float]:
    """Put `count` records at about `rate` per second; return index -> when its PutRecord was called."""
    kinesis = boto(url, "kinesis")
    put_at: dict[int, float] = {}
    for i in range(count):
        put_at[i] = time.time()
        kinesis.put_record(StreamName=stream, PartitionKey=f"k{i % 8}", Data=json.dumps({"i": i}).encode())
        time.sleep(random.uniform(0.5, 1.5) / rate)
    return put_at


def measure(
    name: str, url: str, reader: Callable[[str, Path], list[str]], env: dict[str, str], work: Path, args: Any
) -> dict[str, Any]:
    """Start `reader(stream, out)` on a fresh stream, put records, and summarise put->seen latencies."""
    stream = f"bench-{name}-{os.getpid()}"
    boto(url, "kinesis").create_stream(StreamName=stream, ShardCount=1)
    out = work / f"{name}.jsonl"
    child = Child(name, reader(stream, out), work, {**env, "RECORDER_OUT": str(out)}, work / f"{name}.log")
    try:
        child.wait_log("reading shard", 30)
        progress(f"{name}: putting {args.records} records at ~{args.rate:g}/s")
        put_at = produce(url, stream, args.records, args.rate)
        wait_until(lambda: len(seen(out)) >= args.records, 30, f"{name} to see every record")
    finally:
        child.stop()
    got = seen(out)
    return summary_ms([got[i] - put_at[i] for i in put_at], (50, 90, 99), digits=1)


def hub_reader(url: str, work: Path) -> Callable[[str, Path], list[str]]:
    def argv(stream: str, out: Path) -> list[str]:
        import yaml

        config = {
            "checkpoints": f"sqlite:///{work / 'state.db'}",
            "shutdown_grace": "5s",
            "functions": {
                "rec": {"handler": "functions.recorder.record", "environment": {"RECORDER_OUT": "${RECORDER_OUT}"}}
            },
            "mappings": [
                {
                    "name": "bench",
                    "function": "rec",
                    "source": {
                        "type": "kinesis",
                        "stream_name": stream,
                        "starting_position": "TRIM_HORIZON",
                        "connection": {"endpoint_url": url, "region": AWS_REGION, **AWS_TEST_CONNECTION},
                    },
                }
            ],
        }
        path = work / "hub.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [PYTHON, "-m", "hub", "run", str(path)]

    return argv


def raw(url: str, poll: float) -> Callable[[str, Path], list[str]]:
    def argv(stream: str, out: Path) -> list[str]:
        return [PYTHON, __file__, "--raw-reader", url, stream, str(out), str(poll)]

    return argv


# ---- the bare reader ---------------------------------------------------------------------------------------------


async def raw_reader(url: str, stream: str, out: str, poll: float) -> None:
    import aioboto3

    session = aioboto3.Session()
    async with session.client("kinesis", endpoint_url=url, region_name=AWS_REGION, **AWS_TEST_KEYS) as kinesis:
        shard = (await kinesis.list_shards(StreamName=stream))["Shards"][0]["ShardId"]
        answer = await kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        iterator = answer["ShardIterator"]
        print("reading shard", flush=True)
        with open(out, "a") as sink:
            while iterator:
                page = await kinesis.get_records(ShardIterator=iterator, Limit=100)
                now = time.time()
                for record in page["Records"]:
                    sink.write(json.dumps({"i": json.loads(record["Data"])["i"], "received": now}) + "\n")
                sink.flush()
                iterator = page.get("NextShardIterator")
                if not page["Records"] and not page.get("MillisBehindLatest") and poll > 0:
                    await asyncio.sleep(poll)


# ---- main --------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 records per reader")
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="records per second")
    parser.add_argument("--raw-reader", nargs=4, metavar=("URL", "STREAM", "OUT", "POLL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_reader:
        url, stream, out, poll = args.raw_reader
        with_signal = asyncio.new_event_loop()
        with_signal.add_signal_handler(signal.SIGTERM, lambda: os._exit(0))
        with_signal.run_until_complete(raw_reader(url, stream, out, float(poll)))
        return
    if args.quick:
        args.records = 60

    from connectors.kinesis import KinesisConfig

    poll = KinesisConfig.model_fields["poll_interval"].default
    env = child_env(AWS_TEST_ENV)
    with work_dir("kinesis-bench-") as work:
        moto, url = start_moto(work, env)
        try:
            progress(f"moto_server on {url}; poll_interval {poll * 1000:g}ms")
            results = {
                "hub": measure("hub", url, hub_reader(url, work), env, work, args),
                "raw": measure("raw", url, raw(url, poll), env, work, args),
                "raw_no_wait": measure("raw_no_wait", url, raw(url, 0.0), env, work, args),
            }
        finally:
            moto.stop()
    hub_p50 = results["hub"].get("p50_ms")
    report = {
        "bench": "kinesis",
        "what": "put->handler latency (PutRecord called -> handler/reader saw the record), one shard, moto_server",
        "records": args.records,
        "rate_per_s": args.rate,
        "poll_interval_ms": round(poll * 1000),
        **results,
        "target_p50_ms": TARGET_P50_MS,
        "hub_p50_within_target": hub_p50 is not None and hub_p50 < TARGET_P50_MS,
        "hub_overhead_p50_ms": round(hub_p50 - results["raw"]["p50_ms"], 1) if hub_p50 is not None else None,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
