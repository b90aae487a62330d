"""Benchmark of the `postgres` source: changes/s of the hub vs. a raw replication loop, and change latency.

    .venv/bin/python bench/postgres_bench.py            # full run (~2 min): 3 rounds of 100,000 changes, 10 s at 100/s
    .venv/bin/python bench/postgres_bench.py --quick    # smoke run (~30 s)

Prints ONE JSON object on stdout; progress goes to stderr. Everything runs against the machine's PostgreSQL
(`--url`, default postgresql://postgres@127.0.0.1:5432/postgres; `wal_level = logical`), in a database this script
creates and drops, in the same run:

- throughput: for each round and variant, a publication and a slot of its own are made, then N rows are inserted
  (1,000 per transaction), then the consumer starts on the slot's backlog. `raw` is this file run with
  `--raw-consumer`: the connector's own replication connection (connectors/postgres/replication.py: psycopg2's
  replication cursor on an asyncio loop) and its own pgoutput decoder, counting Insert messages and confirming the
  slot at every Commit: the hub's reading without the hub. It times itself from its first change to its last. The
  hub variants are `python -m hub run` with one `postgres` mapping (batch_size 100, one lane): `hub` in the default
  configuration (`functions.recorder.noop` in an execution environment, a worker process) and `hub-async`
  (`functions.recorder.noop_async` in-process, on the hub's event loop). Their time runs from the first change read
  to the last one invoked, from the hub's /metrics polled every 20 ms. Rounds alternate the variants; a ratio is
  best hub over best raw. Target: hub/raw >= 0.8.
- latency: one row inserted every 10 ms, each in its own transaction; latency is the handler's arrival time
  (`functions.recorder.record`) minus the moment the INSERT's commit returned to this script. The raw loop is
  measured the same way (its arrival time of each Insert message). Target: the hub's p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from common import (
    PYTHON,
    ROOT,
    Child,
    child_env,
    exit_on_sigterm,
    free_port,
    log_problems,
    progress,
    read_jsonl,
    run_raw_consumer,
    summary_ms,
)
from common import work_dir as make_work_dir

TARGET_RATIO = 0.8
TARGET_P99_MS = 10.0
TIMEOUT = 300.0
ROWS_PER_TRANSACTION = 1000
HUB_KINDS = {"hub": ("functions.recorder.noop", "python"), "hub-async": ("functions.recorder.noop_async", "in-process")}
RAW_KINDS = ("raw", "raw-source")
KINDS = (*RAW_KINDS, *HUB_KINDS)


def database_url(base: str, database: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path=f"/{database}"))


async def sql(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement, timeout=120)
    finally:
        await conn.close()


async def make_slot(url: str, name: str) -> None:
    await sql(url, f"CREATE PUBLICATION {name} FOR TABLE bench")
    await sql(url, f"SELECT pg_create_logical_replication_slot('{name}', 'pgoutput')")


async def drop_slot(url: str, name: str) -> None:
    await sql(url, f"SELECT pg_drop_replication_slot('{name}')", f"DROP PUBLICATION {name}")


async def insert_rows(url: str, first: int, count: int) -> None:
    for start in range(first, first + count, ROWS_PER_TRANSACTION):
        end = min(first + count, start + ROWS_PER_TRANSACTION) - 1
        await sql(url, f"INSERT INTO bench (id, note) SELECT g, 'row ' || g FROM generate_series({start}, {end}) g")


# ---- the raw loop -------------------------------------------------------------------------------------------------


async def raw_consumer(url: str, slot: str, count: int, out: Path) -> None:
    """The ceiling: the connector's replication connection and decoder, counting Insert messages, confirming the slot
    at each Commit; until `count` inserts (throughput) or SIGTERM. Writes its first and last arrival times and, per
    row id, when its Insert arrived (for the latency run)."""
    import signal

    sys.path.insert(0, str(ROOT))
    from connectors.postgres.pgoutput import Change, Commit, decode
    from connectors.postgres.replication import ReplicationStream

    stream = ReplicationStream(url, None, slot, slot, status_interval=1.0, receive_timeout=30.0, connect_timeout=10.0)
    await stream.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    arrivals: dict[int, float] = {}
    first = last = 0.0
    seen = 0
    while not stop.is_set() and (count <= 0 or seen < count):
        item = stream.read_now()
        if item is None:
            await stream.wait(0.1)
            continue
        stream.heard()
        message = decode(item[1])
        if isinstance(message, Change) and message.kind == "I":
            last = time.perf_counter()
            first = first or last
            seen += 1
            if count <= 0 and message.new:
                arrivals[int(str(message.new[0]))] = time.time()
        elif isinstance(message, Commit):
            stream.confirm(message.end_lsn)
            stream.keep_alive()
    stream.close()
    out.write_text(json.dumps({"seconds": last - first, "received": seen, "arrivals": arrivals}))


async def source_consumer(url: str, slot: str, count: int, out: Path) -> None:
    """The connector without the hub: the `postgres` source (decoding, DynamoDB records, the lane, settling and
    confirming the slot) read and settled by a bare loop of batches of 100, until `count` changes."""
    sys.path.insert(0, str(ROOT))
    from connectors.postgres import CONNECTOR, PostgresConfig
    from hub.checkpoints import MemoryStore
    from hub.records import Outcome
    from hub.source import SourceContext

    config = PostgresConfig.model_validate(
        {"type": "postgres", "url": url, "tables": ["bench"], "slot": slot, "publication": slot}
    )
    context = SourceContext(mapping="bench", store=MemoryStore(), region="us-east-1", account_id="123456789012")
    source = CONNECTOR.build(config, context)
    await source.open()
    lanes = source.lanes()
    lane = await anext(lanes)  # type: ignore[call-overload]
    first = last = 0.0
    seen = 0
    while seen < count:
        records = await lane.read(100, 10.0)
        if not records:
            raise RuntimeError(f"no change for 10s after {seen}")
        last = time.perf_counter()
        first = first or last
        seen += len(records)
        await lane.settle(Outcome(succeeded=tuple(records)))
    await source.close()
    await lanes.aclose()
    out.write_text(json.dumps({"seconds": last - first, "received": seen}))


# ---- the hub ------------------------------------------------------------------------------------------------------


def hub_config(url: str, slot: str, handler: str, runtime: str, admin_port: int) -> str:
    return f"""\
checkpoints: "memory://"
shutdown_grace: 5s
admin: {{listen: "127.0.0.1:{admin_port}"}}
functions:
  fn: {{handler: {handler}, runtime: {runtime}, timeout: 10s, environment: {{RECORDER_OUT: "${{RECORDER_OUT:-}}"}}}}
mappings:
  - name: bench
    function: fn
    batch_size: 100
    source: {{type: postgres, url: "{url}", tables: [bench], slot: {slot}, publication: {slot}}}
"""


def counters(admin_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("aws_lambda_") and 'mapping="bench"' in line:
            out[line.split("{", 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out


def drain_hub(child: Child, admin_port: int, count: int) -> float:
    """Seconds from the moment the hub started streaming the slot (its log line, to the millisecond: a little before
    its first change) to the last change invoked (/metrics, polled every 20 ms: each scrape costs the hub CPU that
    the raw loop does not pay)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"the hub exited ({child.proc.returncode}):\n{child.log()[-3000:]}")
        try:
            seen = counters(admin_port)
        except OSError:
            time.sleep(0.02)
            continue
        if seen.get("aws_lambda_invoked_event_count_total", 0) >= count:
            return time.time() - streaming_since(child)
        time.sleep(0.02)
    raise RuntimeError(f"the hub did not invoke {count} changes within {TIMEOUT}s")


def streaming_since(child: Child) -> float:
    """The epoch time of the hub's `streaming slot` log line."""
    from datetime import datetime

    line = next(line for line in child.log().splitlines() if "streaming slot" in line)
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def start_hub(work: Path, url: str, slot: str, handler: str, runtime: str, env: dict[str, str]) -> tuple[Child, int]:
    admin_port = free_port()
    config = work / f"hub-{slot}.yaml"
    config.write_text(hub_config(url, slot, handler, runtime, admin_port))
    child = Child(f"hub-{slot}", [PYTHON, "-m", "hub", "run", str(config)], work, child_env(env), work / f"{slot}.log")
    child.wait_log("streaming slot", 30)
    return child, admin_port


# ---- throughput and latency ---------------------------------------------------------------------------------------


def throughput(kind: str, work: Path, url: str, count: int, round_: int, first_id: int) -> dict[str, Any]:
    slot = f"tp_{kind.replace('-', '_')}_{round_}"
    asyncio.run(make_slot(url, slot))
    progress(f"throughput/{kind} #{round_}: inserting {count} rows")
    asyncio.run(insert_rows(url, first_id, count))
    try:
        if kind in RAW_KINDS:
            out = work / f"{slot}.json"
            argv = [PYTHON, str(Path(__file__).resolve()), "--raw-consumer", kind, url, slot, str(count), str(out)]
            seconds, exit_code = run_raw_consumer(kind, argv, work, out, TIMEOUT)
            problems: list[str] = []
        else:
            handler, runtime = HUB_KINDS[kind]
            hub, admin_port = start_hub(work, url, slot, handler, runtime, {})
            try:
                seconds = drain_hub(hub, admin_port, count)
            finally:
                exit_code = hub.stop()
            problems = log_problems(hub.log(), ignore=("no REPLICA IDENTITY FULL",))
    finally:
        asyncio.run(drop_slot(url, slot))
    rate = count / seconds
    progress(f"throughput/{kind} #{round_}: {count} changes in {seconds:.3f}s = {rate:,.0f}/s")
    return {"changes": count, "seconds": round(seconds, 3), "per_s": round(rate, 1), "exit_code": exit_code} | (
        {"problems": problems} if problems else {}
    )


async def insert_paced(url: str, first_id: int, rate: float, count: int) -> dict[int, float]:
    """One row per transaction every 1/rate s; when each INSERT was sent (its commit, with the WAL flush, included
    in the latency: a change reaches logical decoding only once committed)."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    committed: dict[int, float] = {}
    try:
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            committed[first_id + i] = time.time()
            await conn.execute(f"INSERT INTO bench (id, note) VALUES ({first_id + i}, 'latency')")
    finally:
        await conn.close()
    return committed


def latency(kind: str, work: Path, url: str, rate: float, seconds: float, first_id: int) -> dict[str, Any]:
    slot = f"latency_{kind.replace('-', '_')}"
    asyncio.run(make_slot(url, slot))
    out = work / f"{slot}.jsonl"
    count = int(rate * seconds)
    try:
        if kind == "raw":
            argv = [PYTHON, str(Path(__file__).resolve()), "--raw-consumer", "raw", url, slot, "0", str(out)]
            child = Child(kind, argv, work, None, work / f"{slot}.log")
            time.sleep(1.0)  # connected and streaming (the slot's backlog is empty: nothing is missed meanwhile)
        else:
            child, _ = start_hub(work, url, slot, "functions.recorder.record", "python", {"RECORDER_OUT": str(out)})
        asyncio.run(insert_paced(url, first_id - 20, 100.0, 20))  # warm up: imports, the environment, the plan
        time.sleep(0.5)
        progress(f"latency/{kind}: inserting {count} rows at {rate:g}/s")
        committed = asyncio.run(insert_paced(url, first_id, rate, count))
        deadline = time.monotonic() + 30
        while kind != "raw" and time.monotonic() < deadline and len(arrivals_of(out)) < count + 20:
            time.sleep(0.05)
    finally:
        exit_code = child.stop()
        asyncio.run(drop_slot(url, slot))
    arrivals = (
        arrivals_of(out) if kind != "raw" else {int(k): v for k, v in json.loads(out.read_text())["arrivals"].items()}
    )
    latencies = [arrivals[i] - at for i, at in committed.items() if i in arrivals]
    result: dict[str, Any] = {"rate_per_s": rate, "sent": count, "received": len(latencies), "exit_code": exit_code}
    result.update(summary_ms(latencies))
    if kind != "raw":
        problems = log_problems(child.log(), ignore=("no REPLICA IDENTITY FULL",))
        if problems:
            result["problems"] = problems
    progress(f"latency/{kind}: p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms")
    return result


def arrivals_of(out: Path) -> dict[int, float]:
    found = {}
    for entry in read_jsonl(out):
        for record in entry["event"]["Records"]:
            found[int(record["dynamodb"]["Keys"]["id"]["N"])] = entry["received"]
    return found


# ---- main ---------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 20,000, 3 s of latency")
    parser.add_argument(
        "--url", default=os.environ.get("HUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--changes", type=int, default=None, help="changes per throughput round (default 100000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved raw/hub rounds (default 3)")
    parser.add_argument("--rate", type=float, default=100.0, help="changes/s of the latency run (default 100)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="length of the latency run (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, configs)")
    parser.add_argument("--raw-consumer", nargs=5, help=argparse.SUPPRESS)  # KIND URL SLOT N OUT
    args = parser.parse_args()
    if args.raw_consumer:
        kind, url, slot, count, out = args.raw_consumer
        consumer = raw_consumer if kind == "raw" else source_consumer
        asyncio.run(consumer(url, slot, int(count), Path(out)))
        return 0
    exit_on_sigterm()
    changes = args.changes or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    latency_seconds = args.latency_seconds or (3.0 if args.quick else 10.0)
    database = f"bench_{uuid.uuid4().hex[:10]}"
    url = database_url(args.url, database)
    asyncio.run(sql(args.url, f"CREATE DATABASE {database}"))
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    lat: dict[str, Any] = {}
    try:
        asyncio.run(sql(url, "CREATE TABLE bench (id bigint PRIMARY KEY, note text)"))
        with make_work_dir("postgres-bench-", keep=args.keep) as work:
            next_id = 1
            for round_ in range(1, rounds + 1):  # interleaved, so a burst of load elsewhere hits all alike
                for kind in KINDS:
                    runs[kind].append(throughput(kind, work, url, changes, round_, next_id))
                    next_id += changes
            for kind in ("raw", "hub"):
                next_id += 1000
                lat[kind] = latency(kind, work, url, args.rate, latency_seconds, next_id)
                next_id += int(args.rate * latency_seconds)
    finally:
        asyncio.run(sql(args.url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
    best = {kind: max(r["per_s"] for r in results) for kind, results in runs.items()}
    ratios = {kind: round(best[kind] / best["raw"], 3) for kind in HUB_KINDS}
    to_source = {kind: round(best[kind] / best["raw-source"], 3) for kind in HUB_KINDS}
    result = {
        "bench": "postgres",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "throughput": {
            "changes_per_round": changes,
            "batch_size": 100,
            "per_s": {kind: [r["per_s"] for r in results] for kind, results in runs.items()},
            "best_per_s": best,
            "ratio_to_raw": ratios,
            "ratio_to_raw_source": to_source,
            "exit_codes": {kind: [r["exit_code"] for r in results] for kind, results in runs.items()},
            "problems": {kind: r["problems"] for kind, results in runs.items() for r in results if r.get("problems")},
            "target_ratio": TARGET_RATIO,
            "meets_target": {kind: ratio >= TARGET_RATIO for kind, ratio in ratios.items()},
        },
        "latency": {
            **lat,
            "function": "functions.recorder.record",
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": lat["hub"].get("p99_ms") is not None and lat["hub"]["p99_ms"] < TARGET_P99_MS,
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
