"""Benchmark of several hubs on one PostgreSQL store: takeover time after a kill, and 1,000 schedules over three
hubs, with the store's own checkpoint-write ceiling in the same run.

    .venv/bin/python bench/cluster_bench.py            # 10 kills, 1,000 schedules (~4 min)
    .venv/bin/python bench/cluster_bench.py --quick    # 3 kills, 300 schedules (~1.5 min)

Prints ONE JSON object on stdout; progress goes to stderr. Needs the machine's PostgreSQL (127.0.0.1:5432, user
postgres, or BENCH_POSTGRES_URL); each run works in a schema of its own, dropped at the end.

- takeover: three hubs (the default configuration: failover_time 10 s) read a 4-shard Kinesis stream (moto_server)
  while a record goes to every shard every 100 ms. Each round kills (SIGKILL) the hub that holds the most shards,
  and measures, for each of its shards, the time from the kill to the first record another hub's function saw
  (`first`: the first shard taken over, `all`: the last); then starts the hub again and waits for it to be given
  leases back. p50 and max over the rounds.
- schedules: three hubs run N schedules `at(T)`, T some seconds after they start; each must fire exactly once, and
  they are spread over the hubs. Lateness: when the function ran minus T.
- store: bench/store_bench.py in the same run: fenced checkpoint writes per second through the PostgreSQL store
  against a bare UPDATE loop.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from common import (
    AWS_REGION,
    AWS_TEST_CONNECTION,
    AWS_TEST_ENV,
    AWS_TEST_KEYS,
    PYTHON,
    ROOT,
    Child,
    child_env,
    percentile,
    progress,
    read_jsonl,
    start_moto,
    wait_until,
    work_dir,
)

POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def run_sql(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        connection = await asyncpg.connect(POSTGRES)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(go())


class Hubs:
    """Hub processes sharing `config`, each in its own folder under `work`."""

    def __init__(self, work: Path, config: dict[str, Any], env: dict[str, str]) -> None:
        self.work = work
        work.mkdir(exist_ok=True)
        self.path = work / "hub.yaml"
        self.path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.env = env
        self.hubs: dict[str, Child] = {}
        self.starts: Counter[str] = Counter()

    def start(self, name: str, ready: str = "admin endpoint", timeout: float = 60.0) -> Child:
        self.starts[name] += 1
        folder = self.work / name
        folder.mkdir(exist_ok=True)
        argv = [PYTHON, "-m", "hub", "run", str(self.path)]
        child = Child(name, argv, folder, child_env(self.env), folder / f"hub-{self.starts[name]}.log")
        child.wait_log(ready, timeout)
        self.hubs[name] = child
        return child

    def held(self, name: str) -> list[str]:
        (url,) = re.findall(r"admin endpoint.*?url=(\S+)", self.hubs[name].log())[-1:]
        with urllib.request.urlopen(url, timeout=5) as answer:
            return list(json.load(answer)["cluster"]["held"])

    def stop(self) -> None:
        for child in self.hubs.values():
            if child.proc.poll() is None:
                child.stop()


def shard_keys(kinesis: Any, stream: str, shards: int) -> dict[str, str]:
    """A partition key that lands on each shard: {shard id: key}."""
    keys: dict[str, str] = {}
    for i in range(1000):
        shard = kinesis.put_record(StreamName=stream, PartitionKey=f"k{i}", Data=b"{}")["ShardId"]
        keys.setdefault(shard, f"k{i}")
        if len(keys) == shards:
            return keys
    raise RuntimeError("could not find a key for every shard")


def taken_over(out: Path, shards: set[str], killed: float, pid: int) -> dict[str, float] | None:
    """{shard: when another hub's function first saw a record of it after the kill}, once every shard has one."""
    seen: dict[str, float] = {}
    for call in read_jsonl(out):
        if call["received"] <= killed or call["pid"] == pid:
            continue
        for record in call["event"]["Records"]:
            shard = record["eventID"].split(":")[0]
            if shard in shards:
                seen[shard] = min(seen.get(shard, call["received"]), call["received"])
    return seen if set(seen) == shards else None


def takeover(work: Path, moto: str, store: str, rounds: int) -> dict[str, Any]:
    import boto3

    kinesis = boto3.client("kinesis", endpoint_url=moto, region_name=AWS_REGION, **AWS_TEST_KEYS)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    keys = shard_keys(kinesis, stream, 4)
    out = work / "takeover.jsonl"
    config = {
        "checkpoints": store,
        "admin": {"listen": "127.0.0.1:0"},
        "functions": {"rec": {"handler": "functions.recorder.record", "runtime": "in-process"}},
        "mappings": [
            {
                "name": "clicks",
                "function": "rec",
                "source": {
                    "type": "kinesis",
                    "stream_name": stream,
                    "starting_position": "LATEST",
                    "connection": {"endpoint_url": moto, **AWS_TEST_CONNECTION},
                },
            }
        ],
    }
    hubs = Hubs(work / "takeover", config, {**AWS_TEST_ENV, "RECORDER_OUT": str(out)})
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            for key in keys.values():
                kinesis.put_record(StreamName=stream, PartitionKey=key, Data=json.dumps({"n": n}).encode())
            n += 1
            stop.wait(0.1)

    producer = threading.Thread(target=produce, daemon=True)
    first: list[float] = []
    every: list[float] = []
    try:
        for name in "abc":
            hubs.start(name)
        wait_until(lambda: sum(len(hubs.held(n)) for n in "abc") == 4, 60, "the shards to be spread")
        producer.start()
        for i in range(rounds):
            held = {n: {lease.rsplit("/", 1)[1] for lease in hubs.held(n)} for n in "abc"}
            victim = max("abc", key=lambda n: len(held[n]))
            pid = hubs.hubs[victim].proc.pid
            hubs.hubs[victim].proc.kill()
            hubs.hubs[victim].proc.wait()
            killed = time.time()

            lost = held[victim]
            wait_until(functools.partial(taken_over, out, lost, killed, pid), 60, "the killed hub's shards read again")
            seen = taken_over(out, lost, killed, pid) or {}
            first.append(min(seen.values()) - killed)
            every.append(max(seen.values()) - killed)
            progress(f"kill {i + 1}/{rounds}: {len(seen)} shards taken over in {every[-1]:.2f}s")
            hubs.start(victim)
            wait_until(lambda v=victim: hubs.held(v), 60, "the restarted hub to be given a lease")
    finally:
        stop.set()
        hubs.stop()
    first.sort()
    every.sort()
    return {
        "rounds": rounds,
        "failover_time_s": 10.0,
        "first_shard_s": {"p50": round(percentile(first, 50), 3), "max": round(first[-1], 3)},
        "all_shards_s": {"p50": round(percentile(every, 50), 3), "max": round(every[-1], 3)},
    }


def schedules(work: Path, store: str, count: int) -> dict[str, Any]:
    out = work / "schedules.jsonl"
    fire_at = datetime.fromtimestamp(int(time.time()) + 45 + count // 40, UTC)
    expression = f"at({fire_at.strftime('%Y-%m-%dT%H:%M:%S')})"
    config = {
        "checkpoints": store,
        "admin": {"listen": "127.0.0.1:0"},
        "functions": {"rec": {"handler": "functions.recorder.record", "runtime": "in-process"}},
        "mappings": [
            {"name": f"s{i:04}", "function": "rec", "source": {"type": "schedule", "expression": expression}}
            for i in range(count)
        ],
    }
    hubs = Hubs(work / "schedules", config, {"RECORDER_OUT": str(out)})
    try:
        for name in "abc":
            hubs.start(name, timeout=120)

        def even() -> bool:
            held = sorted(len(hubs.held(n)) for n in "abc")
            return sum(held) == count and held[-1] - held[0] <= 1

        wait_until(even, 120, f"{count} schedules to be spread over the hubs")
        spread = sorted(len(hubs.held(n)) for n in "abc")
        progress(f"{count} schedules held by three hubs: {spread}; they fire at {fire_at:%H:%M:%S}")
        wait_until(lambda: len(read_jsonl(out)) >= count, fire_at.timestamp() - time.time() + 60, "every fire")
        time.sleep(3)  # a duplicate would come within a tick or two of the fire: give it the chance to show
    finally:
        hubs.stop()
    calls = read_jsonl(out)
    fired = Counter(call["event"]["resources"][0] for call in calls)
    late = sorted(call["received"] - fire_at.timestamp() for call in calls)
    return {
        "schedules": count,
        "fired": len(calls),
        "fired_twice": sum(1 for n in fired.values() if n > 1),
        "never_fired": count - len(fired),
        "held_per_hub": spread,
        "fired_per_hub": sorted(Counter(call["pid"] for call in calls).values()),
        "lateness_ms": {"p50": round(percentile(late, 50) * 1000, 1), "max": round(late[-1] * 1000, 1)},
    }


def store_ceiling(quick: bool) -> Any:
    script = Path(__file__).with_name("store_bench.py")
    if not script.exists():
        return None
    argv = [PYTHON, str(script), *(["--quick"] if quick else [])]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 kills and 300 schedules")
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    run_sql(f"CREATE SCHEMA {schema}")
    store = f"{POSTGRES}?schema={schema}"
    result: dict[str, Any] = {"benchmark": "cluster"}
    try:
        with work_dir("cluster-bench") as work:
            moto_child, moto = start_moto(work, {**AWS_TEST_ENV})
            try:
                progress("takeover after SIGKILL, three hubs on a 4-shard stream")
                result["takeover"] = takeover(work, moto, store, 3 if args.quick else 10)
            finally:
                moto_child.stop()
            progress("schedules over three hubs")
            result["schedules"] = schedules(work, store, 300 if args.quick else 1000)
        progress("checkpoint writes to PostgreSQL, against a bare UPDATE loop")
        result["store"] = store_ceiling(args.quick)
    finally:
        run_sql(f"DROP SCHEMA {schema} CASCADE")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
