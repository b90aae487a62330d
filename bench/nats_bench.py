"""nats_bench: the `nats` source (a JetStream durable pull consumer) against a raw nats-py pull-and-ack loop.

Runs its own nats-server with JetStream (`nats-server -js`, a store in the temporary folder) on a free loopback port.

- throughput: a fresh stream per round and consumer, preloaded with `--messages` (30,000) messages of ~100 bytes,
  drained by one consumer in its own process and timed from here by polling the durable consumer `bench` (every
  2 ms): from the consumer's creation (the server's timestamp: the hub creates it as its source opens, the raw loop
  as it starts) to every message acked. Consumers:
  `raw` (the baseline: nats-py's `fetch(100)` and an `ack()` per message, in a loop, building nothing; nats-py's
  fetch waits for a round trip per batch and for a future per message, so the hub, which pulls ahead, can beat it),
  `raw-inbox` (the ceiling of a nats-py consumer: the pull protocol the hub speaks, pull requests kept 500 messages
  ahead and an ack per message from a callback subscription, building nothing),
  `hub` (`hub run`, batch_size 100, max_concurrency 5, functions.recorder.noop in the default runtime: execution
  environments), `hub-in-process` (`runtime: in-process`), `hub-async` (an `async def` no-op, in process) and
  `hub-pollers` (the default with 2 pollers sharing the consumer). Rounds alternate the consumers (the machine may
  be shared); a ratio is best hub over best raw, and each round's pair is shown too. Target for the default
  configuration: hub/raw >= 0.8.
- latency: the hub (functions.recorder.record) reads a stream to which this process publishes one message every
  10 ms, each carrying the time it was sent; latency is the handler's arrival time minus that. Target p99 < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

from common import PYTHON, Child, child_env, free_port, log_problems, progress, read_jsonl, summary_ms, work_dir

TARGET_RATIO = 0.8
TARGET_P99_MS = 10.0
POLLERS = 2
TIMEOUT = 120.0
KINDS = ("raw", "raw-inbox", "hub", "hub-in-process", "hub-async", "hub-pollers")
RAWS = ("raw", "raw-inbox")
BODY = json.dumps({"order": 1042, "item": "book", "qty": 2, "note": "x" * 40}).encode()


def nats_binary() -> str:
    for name in ("nats-server", "/usr/sbin/nats-server"):
        if found := shutil.which(name):
            return found
    raise RuntimeError("nats-server is not installed (apt-get install nats-server)")


def start_nats(work: Path) -> tuple[Child, str]:
    port = free_port()
    argv = [nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(work / "store")]
    child = Child("nats-server", argv, work, None, work / "nats-server.log")
    child.wait_log("Server is ready", 15)
    return child, f"nats://127.0.0.1:{port}"


def hub_config(url: str, stream: str, handler: str, runtime: str = "python", pollers: int = 1) -> str:
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
    max_concurrency: 5
{scaling}    source: {{type: nats, servers: "{url}", stream: {stream}, consumer: bench}}
"""


def start_hub(work: Path, url: str, stream: str, handler: str, env: dict[str, str], **options: Any) -> Child:
    config = work / f"hub-{stream}.yaml"
    config.write_text(hub_config(url, stream, handler, **options))
    name = f"hub-{stream}"
    child = Child(name, [PYTHON, "-m", "hub", "run", str(config)], work, child_env(env), work / f"{name}.log")
    child.wait_log("reading ", 30)
    return child


# ---- the bench's own connection ----------------------------------------------------------------------------------


class Broker:
    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10)

    @classmethod
    async def connect(cls, url: str) -> Broker:
        import nats

        return cls(await nats.connect(url, allow_reconnect=False))

    async def stream(self, name: str) -> None:
        await self.js.add_stream(name=name, subjects=[f"{name.lower()}.>"])

    async def preload(self, stream: str, count: int) -> None:
        """Publish without waiting for each JetStream ack, then wait until the stream holds them all."""
        subject = f"{stream.lower()}.orders"
        for i in range(count):
            await self.nc.publish(subject, BODY)
            if i % 1000 == 999:
                await self.nc.flush()
        await self.nc.flush()
        deadline = time.monotonic() + TIMEOUT
        while (await self.js.stream_info(stream)).state.messages < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stream {stream} did not fill")
            await asyncio.sleep(0.05)

    async def drain_seconds(self, stream: str, count: int) -> float:
        """Seconds from the creation of consumer `bench` (by the hub as it opens its source, or by the raw consumer
        as it starts: the server's clock, this machine's) to every message acked (polled every 2 ms). Counting from
        the creation, not from when a poll first sees a delivery, leaves nothing done before the first poll out."""
        from nats.js.errors import NotFoundError

        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                info = await self.js.consumer_info(stream, "bench")
            except NotFoundError:
                info = None
            now = time.time()
            if info is not None and info.ack_floor.stream_seq >= count and info.num_ack_pending == 0:
                return now - info.created.timestamp()
            await asyncio.sleep(0.002)
        raise RuntimeError(f"the stream {stream} was not drained within {TIMEOUT}s")


async def throughput(broker: Broker, kind: str, work: Path, url: str, count: int, round_: int) -> dict[str, Any]:
    stream = f"TP_{kind.replace('-', '_').upper()}_{round_}"
    progress(f"throughput/{kind} #{round_}: preloading {count} messages")
    await broker.stream(stream)
    await broker.preload(stream, count)
    if kind in RAWS:
        argv = [PYTHON, str(Path(__file__).resolve()), f"--{kind}-consumer", url, stream]
        child = Child(kind, argv, work, None, work / f"{kind}.log")
    else:
        handler = "functions.recorder.noop_async" if kind == "hub-async" else "functions.recorder.noop"
        runtime = "in-process" if kind in ("hub-in-process", "hub-async") else "python"
        pollers = POLLERS if kind == "hub-pollers" else 1
        child = start_hub(work, url, stream, handler, {}, runtime=runtime, pollers=pollers)
    try:
        seconds = await broker.drain_seconds(stream, count)
    finally:
        exit_code = child.stop()
    rate = count / seconds
    progress(f"throughput/{kind} #{round_}: {count} messages in {seconds:.3f}s = {rate:,.0f}/s")
    problems = [] if kind in RAWS else log_problems_of(child)
    return {"messages": count, "seconds": round(seconds, 3), "per_s": round(rate, 1), "exit_code": exit_code} | (
        {"problems": problems} if problems else {}
    )


def log_problems_of(child: Child) -> list[str]:
    return log_problems(child.log())


async def raw_consumer(url: str, stream: str) -> None:
    """The ceiling: nats-py's fetch of 100 (a no-wait request, then a waiting one when the stream is empty) and an
    ack per message, in a loop, until SIGTERM."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"{stream.lower()}.>", durable="bench", stream=stream)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(100, timeout=0.5)
        except (TimeoutError, NatsTimeout):
            continue
        for msg in msgs:
            await msg.ack()
    await nc.flush()
    await nc.close()


async def raw_inbox_consumer(url: str, stream: str) -> None:
    """The ceiling of a nats-py consumer: the protocol the hub's source speaks, and nothing else. A callback
    subscription on an inbox acks each message as it arrives, and pull requests keep 500 messages asked for ahead
    (a new one when fewer than half are still due), so deliveries never wait for a round trip."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_consumer(stream, ConsumerConfig(durable_name="bench", ack_policy=AckPolicy.EXPLICIT))
    inbox = nc.new_inbox()
    subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.bench"
    due = 0

    async def ask() -> None:
        nonlocal due
        if due < 250:
            await nc.publish(subject, json.dumps({"batch": 500 - due, "expires": 1_000_000_000}).encode(), reply=inbox)
            due = 500

    async def on_message(msg: Any) -> None:
        nonlocal due
        if msg.reply:
            due -= 1
            await nc.publish(msg.reply, b"+ACK")
        else:  # a status: the request expired (408) or ended
            due = 0
        await ask()

    await nc.subscribe(inbox, cb=on_message)
    await ask()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await nc.flush()
    await nc.close()


# ---- latency ---------------------------------------------------------------------------------------------------


async def latency(broker: Broker, work: Path, url: str, rate: float, seconds: float) -> dict[str, Any]:
    stream = "LATENCY"
    await broker.stream(stream)
    out = work / "latency.jsonl"
    child = start_hub(work, url, stream, "functions.recorder.record", {"RECORDER_OUT": str(out)})
    subject = f"{stream.lower()}.orders"
    try:
        for i in range(20):  # warm up: imports, the execution environment, connections
            await broker.js.publish(subject, json.dumps({"warmup": i, "sent": time.time()}).encode())
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        count = int(rate * seconds)
        progress(f"latency: publishing {count} messages at {rate:g}/s")
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await broker.nc.publish(subject, json.dumps({"n": i, "sent": time.time()}).encode())
            await broker.nc.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = await broker.js.consumer_info(stream, "bench")
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        exit_code = child.stop()
    latencies = []
    for entry in read_jsonl(out):
        for record in entry["event"]["Records"]:
            body = json.loads(base64.b64decode(record["data"]))
            if "n" in body:
                latencies.append(entry["received"] - body["sent"])
    result = {"rate_per_s": rate, "sent": count, "received": len(latencies), "exit_code": exit_code}
    result.update(summary_ms(latencies))
    problems = log_problems_of(child)
    if problems:
        result["problems"] = problems
    progress(f"latency: p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms")
    return result


# ---- main ------------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, work: Path, url: str) -> dict[str, Any]:
    count = args.messages or (10_000 if args.quick else 30_000)
    rounds = args.rounds or (1 if args.quick else 3)
    latency_seconds = args.latency_seconds or (3.0 if args.quick else 10.0)
    broker = await Broker.connect(url)
    try:
        kinds = KINDS if not args.only else tuple(k for k in KINDS if k in args.only.split(",") or k == "raw")
        results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for round_ in range(1, rounds + 1):  # interleaved, so a burst of load elsewhere hits all alike
            for kind in kinds:
                results[kind].append(await throughput(broker, kind, work, url, count, round_))
        lat = await latency(broker, work, url, args.rate, latency_seconds)
    finally:
        await broker.nc.close()
    best = {kind: max(r["per_s"] for r in runs) for kind, runs in results.items()}
    hubs = [kind for kind in results if kind not in RAWS]
    ratios = {kind: round(best[kind] / best["raw"], 3) for kind in hubs}
    inbox = best.get("raw-inbox")
    inbox_ratios = {kind: round(best[kind] / inbox, 3) for kind in hubs} if inbox else {}
    paired = sorted(
        round(h["per_s"] / r["per_s"], 3) for r, h in zip(results["raw"], results.get("hub", []), strict=False)
    )
    return {
        "bench": "nats",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "nats_server": subprocess.run(
            [nats_binary(), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "throughput": {
            "batch_size": 100,
            "max_concurrency": 5,
            "messages_per_round": count,
            "per_s": {kind: [r["per_s"] for r in runs] for kind, runs in results.items()},
            "best_per_s": best,
            "ratio_to_raw": ratios,
            "ratio_to_raw_inbox": inbox_ratios,
            "ratio_hub_per_round": paired,
            "exit_codes": {kind: [r["exit_code"] for r in runs] for kind, runs in results.items()},
            "problems": {kind: r["problems"] for kind, runs in results.items() for r in runs if r.get("problems")},
            "target_ratio": TARGET_RATIO,
            "meets_target": {kind: ratio >= TARGET_RATIO for kind, ratio in ratios.items()},
            "meets_target_against_raw_inbox": {kind: ratio >= TARGET_RATIO for kind, ratio in inbox_ratios.items()},
        },
        "latency": {
            **lat,
            "function": "functions.recorder.record",
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": lat.get("p99_ms") is not None and lat["p99_ms"] < TARGET_P99_MS,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 10,000, 3 s of latency")
    parser.add_argument("--messages", type=int, default=None, help="messages per throughput round (default 30000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s of the latency run (default 100)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="length of the latency run (default 10)")
    parser.add_argument("--only", help=f"a comma-separated subset of {', '.join(KINDS)} (raw always runs)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) and print its path")
    parser.add_argument("--raw-consumer", nargs=2, metavar=("URL", "STREAM"), help=argparse.SUPPRESS)
    parser.add_argument("--raw-inbox-consumer", nargs=2, metavar=("URL", "STREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_consumer:
        asyncio.run(raw_consumer(*args.raw_consumer))
        return 0
    if args.raw_inbox_consumer:
        asyncio.run(raw_inbox_consumer(*args.raw_inbox_consumer))
        return 0
    with work_dir("nats-bench-", keep=args.keep) as work:
        server, url = start_nats(work)
        try:
            result = asyncio.run(run(args, work, url))
        finally:
            server.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
