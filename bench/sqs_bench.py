"""Benchmark of the `sqs` source: messages per second of the hub vs. a raw receive/delete loop, same moto server.

    .venv/bin/python bench/sqs_bench.py            # full run (~1 min): 20 s per consumer
    .venv/bin/python bench/sqs_bench.py --quick    # smoke run (~20 s): 6 s per consumer

Prints ONE JSON object on stdout; progress goes to stderr.

A moto_server is started on a free loopback port. Each consumer reads its own fresh standard queue, as a real
subprocess, while this process keeps the queue shallow: whenever fewer than `--low` (30) messages are visible
it sends `--wave` (50) more (SendMessageBatch of 10, ~100-byte bodies), so moto, whose SQS slows down with
depth, serves both consumers from a queue of the same depth. The consumed count is what the queue no longer
holds (sent - visible - in flight, from GetQueueAttributes), over a window that starts after a warm-up.

- hub:  `python -m hub run hub.yaml`: an `sqs` mapping (wait_time 20s) -> functions.recorder.noop, batch_size 10,
        max_concurrency 5 (up to 5 batches in flight; each batch deleted with DeleteMessageBatch once it settles).
- raw:  this file with `--raw-consumer`: one aioboto3 client in a loop of ReceiveMessage (10, long polling, all
        attributes) then DeleteMessageBatch, one call at a time: the plain client's ceiling.

`hub_over_raw` is the ratio of the two rates; the target is >= 0.8. `starved` counts the producer's checks that
found the queue empty (then the consumer, not moto, set the pace less than it could have).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import threading
import time
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
    exit_on_sigterm,
    log_problems,
    progress,
    start_moto,
    work_dir,
)

TARGET_RATIO = 0.8
BODY = json.dumps({"kind": "benchmark", "text": "x" * 64})


def sqs_client(url: str) -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=url, region_name=AWS_REGION, **AWS_TEST_KEYS)


# ---- the producer ----------------------------------------------------------------------------------------------


class Producer(threading.Thread):
    """Keeps a queue between `low` and `low + wave` visible messages; samples what was consumed."""

    def __init__(self, url: str, queue: str, low: int, wave: int) -> None:
        super().__init__(daemon=True)
        self.sqs = sqs_client(url)
        self.queue = queue
        self.low = low
        self.wave = wave
        self.sent = 0
        self.starved = 0
        self.checks = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def consumed(self) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=names)["Attributes"]
        return self.sent - sum(int(attributes[n]) for n in names)

    def send_wave(self) -> None:
        for i in range(0, self.wave, 10):
            entries = [{"Id": str(j), "MessageBody": BODY} for j in range(min(10, self.wave - i))]
            self.sqs.send_message_batch(QueueUrl=self.queue, Entries=entries)
            self.sent += len(entries)

    def run(self) -> None:
        try:
            self.send_wave()
            while not self.stopping.is_set():
                visible = int(
                    self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages"])[
                        "Attributes"
                    ]["ApproximateNumberOfMessages"]
                )
                self.checks += 1
                if visible == 0:
                    self.starved += 1
                if visible < self.low:
                    self.send_wave()
                else:
                    self.stopping.wait(0.01)
        except BaseException as exc:  # reported in the JSON
            self.error = exc


def measure(kind: str, url: str, work: Path, seconds: float, warmup: float, args: argparse.Namespace) -> dict[str, Any]:
    sqs = sqs_client(url)
    queue = sqs.create_queue(QueueName=f"bench-{kind}-{os.getpid()}", Attributes={"VisibilityTimeout": "30"})[
        "QueueUrl"
    ]
    producer = Producer(url, queue, args.low, args.wave)
    producer.start()
    folder = work / kind
    folder.mkdir()
    if kind == "hub":
        config = {
            "checkpoints": "memory://",
            "shutdown_grace": "10s",
            "functions": {"noop": {"handler": "functions.recorder.noop"}},
            "mappings": [
                {
                    "function": "noop",
                    "batch_size": 10,
                    "max_concurrency": args.max_concurrency,
                    "source": {
                        "type": "sqs",
                        "queue_url": queue,
                        "connection": {"endpoint_url": url, "region": AWS_REGION, **AWS_TEST_CONNECTION},
                    },
                }
            ],
        }
        (folder / "hub.json").write_text(json.dumps(config))
        argv = [PYTHON, "-m", "hub", "run", str(folder / "hub.json")]
        if args.profile_hub:
            argv[1:1] = ["-m", "cProfile", "-o", args.profile_hub]
        ready = "hub running"
    else:
        argv = [PYTHON, __file__, "--raw-consumer", url, queue]
        ready = "raw consumer running"
    child = Child(kind, argv, folder, child_env(AWS_TEST_ENV), folder / f"{kind}.log")
    result: dict[str, Any] = {}
    try:
        child.wait_log(ready)
        time.sleep(warmup)
        start, before = time.monotonic(), producer.consumed()
        checks, starved = producer.checks, producer.starved
        time.sleep(seconds)
        elapsed, after = time.monotonic() - start, producer.consumed()
        result = {
            "messages": after - before,
            "seconds": round(elapsed, 3),
            "messages_per_s": round((after - before) / elapsed, 1),
            "producer_checks": producer.checks - checks,
            "starved": producer.starved - starved,
        }
    finally:
        producer.stopping.set()
        producer.join(10)
        result["exit_code"] = child.stop()
        result["log_problems"] = log_problems(child.log())
        if producer.error is not None:
            result["producer_error"] = repr(producer.error)
    progress(f"{kind}: {result.get('messages_per_s')} messages/s")
    return result


# ---- the raw consumer ------------------------------------------------------------------------------------------


async def raw_consumer(url: str, queue: str) -> None:
    import aioboto3

    session = aioboto3.Session()
    async with session.client("sqs", endpoint_url=url, region_name=AWS_REGION, **AWS_TEST_KEYS) as sqs:
        print("raw consumer running", flush=True)
        while True:
            answer = await sqs.receive_message(
                QueueUrl=queue,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=20,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = answer.get("Messages") or []
            if messages:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
                await sqs.delete_message_batch(QueueUrl=queue, Entries=entries)


# ---- main ------------------------------------------------------------------------------------------------------


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per consumer (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (default 2)")
    parser.add_argument("--max-concurrency", type=int, default=5, help="the mapping's max_concurrency (default 5)")
    parser.add_argument("--low", type=int, default=30, help="refill when fewer messages are visible (default 30)")
    parser.add_argument("--wave", type=int, default=50, help="messages sent per refill (default 50)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 s per consumer")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) and print its path")
    parser.add_argument("--profile-hub", metavar="PATH", help="run the hub under cProfile, stats written to PATH")
    parser.add_argument("--raw-consumer", nargs=2, metavar=("URL", "QUEUE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_consumer:
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            asyncio.run(raw_consumer(*args.raw_consumer))
        return 0
    if args.seconds is None:
        args.seconds = 6.0 if args.quick else 20.0
    import moto

    report: dict[str, Any] = {
        "bench": "sqs",
        "params": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "batch_size": 10,
            "max_concurrency": args.max_concurrency,
            "queue_depth": f"{args.low}..{args.low + args.wave} visible",
            "body_bytes": len(BODY),
            "handler": "functions.recorder.noop",
        },
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "moto": moto.__version__},
    }
    with work_dir("sqs-bench-", keep=args.keep) as work:
        moto_server, url = start_moto(work, child_env(AWS_TEST_ENV))
        try:
            raw = measure("raw", url, work, args.seconds, args.warmup, args)
            hub = measure("hub", url, work, args.seconds, args.warmup, args)
        finally:
            moto_server.stop()
    report["raw"], report["hub"] = raw, hub
    ratio = round(hub["messages_per_s"] / raw["messages_per_s"], 2) if raw.get("messages_per_s") else None
    report["hub_over_raw"] = ratio
    report["targets"] = {"hub_over_raw": {"target": f">= {TARGET_RATIO}", "met": ratio is not None and ratio >= 0.8}}
    problems = []
    for kind, run in (("raw", raw), ("hub", hub)):
        if run.get("exit_code") not in (0, None):
            problems.append(f"{kind}: exit code {run['exit_code']} after SIGTERM")
        if run.get("starved"):
            problems.append(f"{kind}: the queue was empty at {run['starved']} of {run['producer_checks']} checks")
        if run.get("producer_error"):
            problems.append(f"{kind}: producer failed: {run['producer_error']}")
        problems.extend(f"{kind} log: {line}" for line in run.get("log_problems", []))
    report["problems"] = problems
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
