"""Benchmark of the `mqtt` source: messages/s of the hub vs. a raw aiomqtt loop, and event latency.

    .venv/bin/python bench/mqtt_bench.py            # full run (~1.5 min): 3 rounds of 20,000 messages, 10 s at 100/s
    .venv/bin/python bench/mqtt_bench.py --quick    # smoke run (~20 s)

Prints ONE JSON object on stdout; progress goes to stderr. Everything runs against one `mosquitto` that this script
starts on a free loopback port (persistence off, `max_queued_messages` above the backlog), in the same run:

- throughput: a persistent session (MQTT 5, QoS 1 subscription) is made for the consumer's client id, N messages
  of ~100 bytes are published into it at QoS 1 while no consumer is connected, then the consumer connects and
  drains the backlog. `raw` is this file run with `--raw-consumer`: aiomqtt in the same session settings (Receive
  Maximum 100), `async for message in client.messages` counting each one, paho acknowledging each message as its
  callback returns: the idiomatic client that does nothing with what it reads. `raw-callback` is the same client
  counting in the callback itself (aiomqtt's `queue_type`, as the connector takes messages), without the task
  aiomqtt's iterator makes per message: the library's own ceiling. Each times itself, from its first message to
  its last. The hub variants are `python -m hub run` with one `mqtt` mapping (max_concurrency 10, so
  Receive Maximum 100): `hub` in the default configuration (`functions.recorder.noop` in execution environments,
  worker processes: one invocation per message crosses to one and back), `hub-in-process` (the sync no-op on a
  worker thread of the hub) and `hub-async` (`functions.recorder.noop_async` on the hub's event loop). Their time
  runs from the first message read to the last one invoked, from the hub's /metrics polled every 20 ms (the PUBACK
  follows within a millisecond). Rounds alternate the variants; a ratio is best hub over best raw.
  Target: hub/raw >= 0.8.
- latency: the hub (functions.recorder.record) subscribed, and this process publishing one message every 10 ms
  (QoS 1), each carrying the time it was sent; latency is the handler's arrival time minus that. Target p99 < 10 ms.

An MQTT message is one asynchronous invocation (as an IoT rule invokes Lambda): there is no batch to spread the
cost of an invocation over, so the hub's figure is a rate of invocations, where the Kafka and Redis benchmarks
measure records in batches of 100 and more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import (
    PYTHON,
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
TIMEOUT = 180.0
RECEIVE_MAXIMUM = 100
MAX_CONCURRENCY = 10
SESSION_EXPIRY = 3600
PAYLOAD = json.dumps({"device": "sensor-7", "temperature": 21.5, "humidity": 40, "note": "x" * 40}).encode()
RAW_KINDS = ("raw", "raw-callback")
HUB_KINDS = {
    "hub": ("functions.recorder.noop", "python"),
    "hub-in-process": ("functions.recorder.noop", "in-process"),
    "hub-async": ("functions.recorder.noop_async", "in-process"),
}


# ---- the broker and the sessions ----------------------------------------------------------------------------------


def start_mosquitto(work: Path) -> tuple[Child, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).is_file():
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    port = free_port()
    config = work / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\npersistence false\n"
        "max_queued_messages 1000000\nmax_inflight_messages 100\nlog_type error\nlog_type warning\n"
    )
    child = Child("mosquitto", [binary, "-c", str(config)], work, None, work / "mosquitto.log")
    deadline = time.monotonic() + 15
    while not _accepts(port):
        if child.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto did not start:\n{child.log()[-2000:]}")
        time.sleep(0.02)
    return child, port


def _accepts(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def session_client(port: int, client_id: str, **options: Any) -> Any:
    """An aiomqtt client in the session settings the hub uses: MQTT 5, clean_start=0, an expiry, Receive Maximum."""
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=properties,
        **options,
    )


async def subscribe(client: Any, topic: str) -> None:
    from paho.mqtt.subscribeoptions import SubscribeOptions

    await client.subscribe([(topic, SubscribeOptions(qos=1, retainHandling=2))])


async def backlog(port: int, client_id: str, topic: str, count: int) -> None:
    """Make the consumer's session (subscribed, then away), and publish `count` messages into it at QoS 1."""
    import aiomqtt

    async with session_client(port, client_id) as client:
        await subscribe(client, topic)
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"{client_id}-pub", max_inflight_messages=1000) as pub:
        pub.pending_calls_threshold = 1000  # 500 publishes awaited at once are the point here, not a leak
        for start in range(0, count, 500):
            await asyncio.gather(*(pub.publish(topic, PAYLOAD, qos=1) for _ in range(start, min(count, start + 500))))


# ---- throughput ---------------------------------------------------------------------------------------------------


def hub_config(port: int, topic: str, client_id: str, handler: str, runtime: str, admin_port: int) -> str:
    return f"""\
checkpoints: "memory://"
shutdown_grace: 5s
admin: {{listen: "127.0.0.1:{admin_port}"}}
functions:
  fn: {{handler: {handler}, runtime: {runtime}, timeout: 10s, environment: {{RECORDER_OUT: "${{RECORDER_OUT:-}}"}}}}
mappings:
  - name: bench
    function: fn
    max_concurrency: {MAX_CONCURRENCY}
    source: {{type: mqtt, url: "mqtt://127.0.0.1:{port}", topics: ["{topic}"], client_id: {client_id},
              receive_maximum: {RECEIVE_MAXIMUM}, session_expiry: {SESSION_EXPIRY}s}}
"""


def counters(admin_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("aws_lambda_") and 'mapping="bench"' in line:
            name, value = line.split("{", 1)[0], line.rsplit(" ", 1)[1]
            out[name] = float(value)
    return out


def drain_hub(child: Child, admin_port: int, count: int) -> float:
    """Seconds from the first message the hub read to the last it invoked (/metrics, every 20 ms)."""
    started: float | None = None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"the hub exited ({child.proc.returncode}):\n{child.log()[-3000:]}")
        try:
            seen = counters(admin_port)
        except OSError:
            time.sleep(0.02)
            continue
        now = time.perf_counter()
        if started is None and seen.get("aws_lambda_polled_event_count_total", 0) > 0:
            started = now
        if started is not None and seen.get("aws_lambda_invoked_event_count_total", 0) >= count:
            return now - started
        time.sleep(0.02)
    raise RuntimeError(f"the hub did not invoke {count} messages within {TIMEOUT}s")


def throughput(kind: str, work: Path, port: int, count: int, round_: int) -> dict[str, Any]:
    topic = f"bench/{kind}/{round_}"
    client_id = f"bench-{kind}-{round_}"
    progress(f"throughput/{kind} #{round_}: publishing a backlog of {count} messages")
    asyncio.run(backlog(port, client_id, topic, count))
    if kind in RAW_KINDS:
        out = work / f"{kind}-{round_}.json"
        argv = [PYTHON, str(Path(__file__).resolve()), "--raw-consumer", kind, str(port), client_id, topic, str(count)]
        seconds, exit_code = run_raw_consumer(kind, [*argv, str(out)], work, out, TIMEOUT)
        problems: list[str] = []
    else:
        handler, runtime = HUB_KINDS[kind]
        admin_port = free_port()
        config = work / f"hub-{kind}-{round_}.yaml"
        config.write_text(hub_config(port, topic, client_id, handler, runtime, admin_port))
        name = f"hub-{kind}-{round_}"
        child = Child(name, [PYTHON, "-m", "hub", "run", str(config)], work, child_env({}), work / f"{name}.log")
        try:
            child.wait_log("subscribed to", 30)
            seconds = drain_hub(child, admin_port, count)
        finally:
            exit_code = child.stop()
        problems = log_problems(child.log())
    rate = count / seconds
    progress(f"throughput/{kind} #{round_}: {count} messages in {seconds:.3f}s = {rate:,.0f}/s")
    return {"messages": count, "seconds": round(seconds, 3), "per_s": round(rate, 1), "exit_code": exit_code} | (
        {"problems": problems} if problems else {}
    )


async def raw_consumer(kind: str, port: int, client_id: str, topic: str, count: int, out: Path) -> None:
    """The ceiling: the backlog's session resumed, each message counted; paho acks it as its callback returns.
    `raw` iterates `client.messages`; `raw-callback` counts in aiomqtt's queue (`queue_type`) as messages arrive."""
    times: list[float] = []
    done = asyncio.Event()

    class Counting(asyncio.Queue):  # type: ignore[type-arg]
        def put_nowait(self, item: Any) -> None:
            times.append(time.perf_counter())
            if len(times) >= count:
                done.set()

    options = {"queue_type": Counting} if kind == "raw-callback" else {}
    async with session_client(port, client_id, **options) as client:
        await subscribe(client, topic)  # as the hub does on a resumed session
        if kind == "raw-callback":
            await done.wait()
        else:
            async for _message in client.messages:
                times.append(time.perf_counter())
                if len(times) >= count:
                    break
    out.write_text(json.dumps({"seconds": times[-1] - times[0], "received": len(times)}))


# ---- latency ------------------------------------------------------------------------------------------------------


def latency(work: Path, port: int, rate: float, seconds: float) -> dict[str, Any]:
    topic = "bench/latency"
    out = work / "latency.jsonl"
    admin_port = free_port()
    config = work / "hub-latency.yaml"
    config.write_text(hub_config(port, topic, "bench-latency", "functions.recorder.record", "python", admin_port))
    env = child_env({"RECORDER_OUT": str(out)})
    child = Child("hub-latency", [PYTHON, "-m", "hub", "run", str(config)], work, env, work / "hub-latency.log")
    count = int(rate * seconds)
    try:
        child.wait_log("subscribed to", 30)
        asyncio.run(publish_paced(port, topic, rate, count))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(1 for e in read_jsonl(out) if "n" in e["event"]) < count:
            time.sleep(0.05)
    finally:
        exit_code = child.stop()
    latencies = [e["received"] - e["event"]["sent"] for e in read_jsonl(out) if "n" in e["event"]]
    result: dict[str, Any] = {"rate_per_s": rate, "sent": count, "received": len(latencies), "exit_code": exit_code}
    result.update(summary_ms(latencies))
    problems = log_problems(child.log())
    if problems:
        result["problems"] = problems
    progress(f"latency: p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms")
    return result


async def publish_paced(port: int, topic: str, rate: float, count: int) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-latency-pub") as client:
        for i in range(20):  # warm up: the environment's imports, connections
            await client.publish(topic, json.dumps({"warmup": i, "sent": time.time()}), qos=1)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        progress(f"latency: sending {count} messages at {rate:g}/s")
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await client.publish(topic, json.dumps({"n": i, "sent": time.time()}), qos=1)


# ---- main ---------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 5,000, 3 s of latency")
    parser.add_argument("--messages", type=int, default=None, help="messages per throughput round (default 20000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved raw/hub rounds (default 3)")
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s of the latency run (default 100)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="length of the latency run (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, configs)")
    parser.add_argument("--raw-consumer", nargs=6, help=argparse.SUPPRESS)  # KIND PORT ID TOPIC N OUT
    args = parser.parse_args()
    if args.raw_consumer:
        kind, port, client_id, topic, count, out = args.raw_consumer
        asyncio.run(raw_consumer(kind, int(port), client_id, topic, int(count), Path(out)))
        return 0
    exit_on_sigterm()
    messages = args.messages or (5_000 if args.quick else 20_000)
    rounds = args.rounds or (1 if args.quick else 3)
    latency_seconds = args.latency_seconds or (3.0 if args.quick else 10.0)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in (*RAW_KINDS, *HUB_KINDS)}
    with make_work_dir("mqtt-bench-", keep=args.keep) as work:
        broker, port = start_mosquitto(work)
        try:
            for round_ in range(1, rounds + 1):  # interleaved, so a burst of load elsewhere hits all alike
                for kind in runs:
                    runs[kind].append(throughput(kind, work, port, messages, round_))
            lat = latency(work, port, args.rate, latency_seconds)
        finally:
            broker.stop()
    best = {kind: max(r["per_s"] for r in results) for kind, results in runs.items()}
    ratios = {kind: round(best[kind] / best["raw"], 3) for kind in HUB_KINDS}
    strict = {kind: round(best[kind] / best["raw-callback"], 3) for kind in HUB_KINDS}
    version = subprocess.run([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"], capture_output=True, text=True)
    result = {
        "bench": "mqtt",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "mosquitto": (version.stdout.splitlines() or [""])[0],
        "throughput": {
            "messages_per_round": messages,
            "max_concurrency": MAX_CONCURRENCY,
            "receive_maximum": RECEIVE_MAXIMUM,
            "per_s": {kind: [r["per_s"] for r in results] for kind, results in runs.items()},
            "best_per_s": best,
            "ratio": ratios,
            "ratio_to_raw_callback": strict,
            "ratio_per_round": {
                kind: sorted(round(h["per_s"] / r["per_s"], 3) for r, h in zip(runs["raw"], runs[kind], strict=True))
                for kind in HUB_KINDS
            },
            "exit_codes": {kind: [r["exit_code"] for r in results] for kind, results in runs.items()},
            "problems": {kind: r["problems"] for kind, results in runs.items() for r in results if r.get("problems")},
            "target_ratio": TARGET_RATIO,
            "meets_target": {kind: ratio >= TARGET_RATIO for kind, ratio in ratios.items()},
            "meets_target_against_raw_callback": {kind: ratio >= TARGET_RATIO for kind, ratio in strict.items()},
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
