"""Benchmark of the `redis` source: throughput of the hub vs. a raw XREADGROUP/XACK loop, and event latency.

    .venv/bin/python bench/redis_bench.py            # full run (~60 s): 3 x 30,000 entries each, then 10 s at 100/s
    .venv/bin/python bench/redis_bench.py --quick    # smoke run (~10 s)

Prints ONE JSON object on stdout; progress goes to stderr. Everything runs against one `redis-server` that this
script starts on a free loopback port (persistence off), in the same run:

- throughput: N entries are preloaded into a fresh stream, then a consumer starts and drains it through a
  consumer group. `raw` is this file run with `--raw-consumer`: an asyncio loop of XREADGROUP COUNT 100, each
  batch XACKed while the next is read: the ceiling of a client that does nothing with what it reads. `hub` is
  `python -m hub run` with one `redis` mapping -> functions.recorder.noop (batch_size 100), in one process, in
  the default configuration (the default runtime, `python`: the function's execution environments are worker
  processes); `hub-pollers` is the same mapping with `provisioned_poller_config` of 2 pollers (two consumer
  processes of the group). The opt-in `runtime: in-process`: `hub-in-process` (the sync handler on a worker thread
  of the hub) and `hub-async` (functions.recorder.noop_async, an `async def` handler, on the hub's event loop: no
  hand-off at all). All are subprocesses, timed the same way by polling XINFO GROUPS from here: from
  the first entry read to the moment nothing is left unread or pending. Rounds alternate the variants (the machine
  may be shared); a ratio is best hub over best raw, and every round's figures are printed too. Target for the
  default configuration: hub/raw >= 0.8.
- latency: the hub (functions.recorder.record) reads a stream to which this process appends one entry every
  10 ms, each carrying the time it was sent; latency is the handler's arrival time minus that. Target p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import PYTHON, Child, child_env, free_port, progress, read_jsonl, summary_ms, work_dir

IN_PROCESS = {"hub-in-process", "hub-async"}
"""The variants whose function runs with `runtime: in-process` (the others: the default, `python`)."""
TARGET_RATIO = 0.8
POLLERS = 2
"""The second hub figure: the mapping with `provisioned_poller_config` of this many pollers (consumer processes)."""
TARGET_P99_MS = 10.0
TIMEOUT = 120.0


# ---- processes -------------------------------------------------------------------------------------------------


def start_redis(work: Path) -> tuple[Child, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    child = Child("redis-server", argv, work, None, work / "redis-server.log")
    child.wait_log("Ready to accept connections", 15)
    return child, f"redis://127.0.0.1:{port}/0"


def hub_config(
    url: str,
    stream: str,
    handler: str,
    max_concurrency: int,
    pollers: int = 1,
    runtime: str = "python",
) -> str:
    scaling = ""
    if pollers > 1:
        scaling = f"    provisioned_poller_config: {{minimum_pollers: {pollers}, maximum_pollers: {pollers}}}\n"
    return f"""\
checkpoints: "memory://"
shutdown_grace: 5s
functions:
  fn: {{handler: {handler}, runtime: {runtime}, timeout: 10s, environment: {{RECORDER_OUT: "${{RECORDER_OUT:-}}"}}}}
mappings:
  - name: bench
    function: fn
    batch_size: 100
    max_concurrency: {max_concurrency}
{scaling}    source: {{type: redis, url: "{url}", stream: {stream}, consumer_group: bench, block: 1s}}
"""


def start_hub(
    work: Path,
    url: str,
    stream: str,
    handler: str,
    max_concurrency: int,
    env: dict[str, str],
    pollers: int = 1,
    runtime: str = "python",
) -> Child:
    config = work / f"hub-{stream}.yaml"
    config.write_text(hub_config(url, stream, handler, max_concurrency, pollers, runtime))
    name = f"hub-{stream}"
    child = Child(name, [PYTHON, "-m", "hub", "run", str(config)], work, child_env(env), work / f"{name}.log")
    child.wait_log("reading ", 30)
    return child


# ---- throughput ------------------------------------------------------------------------------------------------


def preload(client: Any, stream: str, count: int) -> None:
    body = json.dumps({"order": 1042, "item": "book", "qty": 2, "note": "x" * 40})
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(count, start + 1000)):
            pipe.xadd(stream, {"n": str(i), "payload": body})
        pipe.execute()


def drain_seconds(client: Any, stream: str, count: int) -> tuple[float, dict[str, Any]]:
    """Seconds from the first entry read by group `bench` to nothing left unread or pending (polled every 2 ms)."""
    started: float | None = None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        groups = {
            g["name"].decode() if isinstance(g["name"], bytes) else g["name"]: g for g in client.xinfo_groups(stream)
        }
        group = groups.get("bench")
        if group is not None:
            now = time.perf_counter()
            read = group.get("entries-read") or 0
            if started is None and (read or group["pending"]):
                started = now
            if started is not None and read >= count and group["pending"] == 0:
                return now - started, group
        time.sleep(0.002)
    raise RuntimeError(f"the stream {stream} was not drained within {TIMEOUT}s")


def throughput(kind: str, work: Path, url: str, count: int, max_concurrency: int, round_: int) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    stream = f"tp-{kind}-{round_}"
    progress(f"throughput/{kind} #{round_}: preloading {count} entries")
    preload(client, stream, count)
    if kind == "raw":
        argv = [PYTHON, str(Path(__file__).resolve()), "--raw-consumer", url, stream]
        child = Child("raw", argv, work, None, work / "raw.log")
    else:
        pollers = POLLERS if kind == "hub-pollers" else 1
        handler = "functions.recorder.noop_async" if kind == "hub-async" else "functions.recorder.noop"
        runtime = "in-process" if kind in IN_PROCESS else "python"
        child = start_hub(work, url, stream, handler, max_concurrency, {}, pollers, runtime=runtime)
    try:
        seconds, _ = drain_seconds(client, stream, count)
    finally:
        exit_code = child.stop()
        client.close()
    rate = count / seconds
    progress(f"throughput/{kind} #{round_}: {count} entries in {seconds:.3f}s = {rate:,.0f}/s")
    return {"entries": count, "seconds": round(seconds, 3), "per_s": round(rate, 1), "exit_code": exit_code}


async def raw_consumer(url: str, stream: str) -> None:
    """The ceiling: XREADGROUP COUNT 100 (blocking), then XACK of what was read, in a loop, until SIGTERM."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, protocol=2)  # the protocol the connector speaks
    with contextlib.suppress(redis.ResponseError):
        await client.xgroup_create(stream, "bench", id="0", mkstream=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    acks: set[asyncio.Task[Any]] = set()
    while not stop.is_set():
        reply: Any = await client.xreadgroup("bench", "raw", {stream: ">"}, count=100, block=200)
        if reply:
            # the ack overlaps the next read, on another pooled connection, as the hub's settle does
            ids = [entry_id for entry_id, _ in reply[0][1]]
            ack = asyncio.ensure_future(client.xack(stream, "bench", *ids))
            acks.add(ack)
            ack.add_done_callback(acks.discard)
    await asyncio.gather(*acks)
    await client.aclose()


# ---- latency ---------------------------------------------------------------------------------------------------


def latency(work: Path, url: str, rate: float, seconds: float, max_concurrency: int) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    stream = "latency"
    out = work / "latency.jsonl"
    child = start_hub(work, url, stream, "functions.recorder.record", max_concurrency, {"RECORDER_OUT": str(out)})
    try:
        for i in range(20):  # warm up: imports, thread pool, connections
            client.xadd(stream, {"warmup": str(i), "sent": repr(time.time())})
            time.sleep(0.01)
        time.sleep(0.5)
        count = int(rate * seconds)
        progress(f"latency: sending {count} entries at {rate:g}/s")
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            client.xadd(stream, {"n": str(i), "sent": repr(time.time())})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            group = {g["name"].decode(): g for g in client.xinfo_groups(stream)}["bench"]
            if group["pending"] == 0 and group.get("lag") == 0:
                break
            time.sleep(0.05)
    finally:
        exit_code = child.stop()
        client.close()
    latencies = []
    for entry in read_jsonl(out):
        for record in entry["event"]["Records"]:
            if "n" in record["data"]:
                latencies.append(entry["received"] - float(record["data"]["sent"]))
    result = {"rate_per_s": rate, "sent": count, "received": len(latencies), "exit_code": exit_code}
    result.update(summary_ms(latencies))
    progress(f"latency: p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms")
    return result


# ---- main ------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 10,000, 3 s of latency")
    parser.add_argument("--entries", type=int, default=None, help="entries per throughput round (default 30000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved raw/hub rounds (default 3)")
    parser.add_argument("--rate", type=float, default=100.0, help="entries/s of the latency run (default 100)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="length of the latency run (default 10)")
    parser.add_argument("--max-concurrency", type=int, default=5, help="the mapping's max_concurrency (default 5)")
    parser.add_argument("--raw-consumer", nargs=2, metavar=("URL", "STREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_consumer:
        asyncio.run(raw_consumer(*args.raw_consumer))
        return 0
    entries = args.entries or (10_000 if args.quick else 30_000)
    rounds = args.rounds or (1 if args.quick else 3)
    latency_seconds = args.latency_seconds or (3.0 if args.quick else 10.0)
    with work_dir("redis-bench-") as work:
        server, url = start_redis(work)
        try:
            raws, hubs, scaled, inproc, asyncs = [], [], [], [], []
            for round_ in range(1, rounds + 1):  # interleaved, so a burst of load elsewhere hits all alike
                raws.append(throughput("raw", work, url, entries, args.max_concurrency, round_))
                hubs.append(throughput("hub", work, url, entries, args.max_concurrency, round_))
                scaled.append(throughput("hub-pollers", work, url, entries, args.max_concurrency, round_))
                inproc.append(throughput("hub-in-process", work, url, entries, args.max_concurrency, round_))
                asyncs.append(throughput("hub-async", work, url, entries, args.max_concurrency, round_))
            lat = latency(work, url, args.rate, latency_seconds, args.max_concurrency)
        finally:
            server.stop()
    best_raw, best_hub = max(r["per_s"] for r in raws), max(h["per_s"] for h in hubs)
    best_scaled = max(h["per_s"] for h in scaled)
    best_async = max(h["per_s"] for h in asyncs)
    best_inproc = max(h["per_s"] for h in inproc)
    ratio_inproc = round(best_inproc / best_raw, 3)
    ratio = round(best_hub / best_raw, 3)
    ratio_async = round(best_async / best_raw, 3)
    ratio_scaled = round(best_scaled / best_raw, 3)
    paired = sorted(round(h["per_s"] / r["per_s"], 3) for r, h in zip(raws, hubs, strict=True))
    result = {
        "bench": "redis_streams",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "redis_server": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "throughput": {
            "batch_size": 100,
            "max_concurrency": args.max_concurrency,
            "function": "functions.recorder.noop",
            "entries_per_round": entries,
            "raw_per_s": [r["per_s"] for r in raws],
            "hub_per_s": [h["per_s"] for h in hubs],
            "best_raw_per_s": best_raw,
            "best_hub_per_s": best_hub,
            "ratio": ratio,
            "ratio_per_round": paired,
            "hub_exit_codes": [h["exit_code"] for h in hubs],
            f"hub_{POLLERS}_pollers_per_s": [h["per_s"] for h in scaled],
            f"best_hub_{POLLERS}_pollers_per_s": best_scaled,
            f"ratio_{POLLERS}_pollers": ratio_scaled,
            f"hub_{POLLERS}_pollers_exit_codes": [h["exit_code"] for h in scaled],
            "hub_in_process_per_s": [h["per_s"] for h in inproc],
            "best_hub_in_process_per_s": best_inproc,
            "ratio_in_process": ratio_inproc,
            "ratio_in_process_per_round": sorted(
                round(h["per_s"] / r["per_s"], 3) for r, h in zip(raws, inproc, strict=True)
            ),
            "hub_async_handler_per_s": [h["per_s"] for h in asyncs],
            "best_hub_async_handler_per_s": best_async,
            "ratio_async_handler": ratio_async,
            "target_ratio": TARGET_RATIO,
            "meets_target": {
                "one_process": ratio >= TARGET_RATIO,
                f"{POLLERS}_pollers": ratio_scaled >= TARGET_RATIO,
                "one_process_in_process": ratio_inproc >= TARGET_RATIO,
                "one_process_async_handler": ratio_async >= TARGET_RATIO,
            },
        },
        "latency": {
            **lat,
            "function": "functions.recorder.record",
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": lat.get("p99_ms") is not None and lat["p99_ms"] < TARGET_P99_MS,
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
