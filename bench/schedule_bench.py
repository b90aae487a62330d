"""Benchmark of the `schedule` source: how close to its scheduled time each `rate(1 second)` fire reaches the handler.

    .venv/bin/python bench/schedule_bench.py            # full run: 100 fires (~2 min)
    .venv/bin/python bench/schedule_bench.py --quick    # smoke run: 10 fires (~15 s)

Prints ONE JSON object on stdout; progress goes to stderr. See bench/README.md for what the numbers mean.

- hub:  `python -m hub run hub.yaml` (a real subprocess, fresh temporary folder) with one mapping
        `schedule rate(1 second)` -> functions.recorder.record. Each fire's error is |received - scheduled|, with
        `received` from the recorder's line and `scheduled` from the event's `time`.
- raw:  in this process, at the same time, an asyncio loop that sleeps until each whole second exactly as
        hub.source.SystemClock.sleep_until does (asyncio.sleep of the remaining delta, re-checking the wall
        clock) and measures its own lateness: the ceiling of an asyncio timer on this machine under this load.

The event's `time` has second precision. A `rate()` schedule fires at anchor + k * interval, and the anchor is
the instant the schedule was first opened (microsecond precision), so by default the fires are NOT on whole
seconds and `time` is up to 1 s before the real fire. The benchmark therefore sets `start_date` to a whole
second (`--anchor whole-second`, the default): the fires then fall on whole seconds and `time` is exact.
`--anchor default` runs without it, to show what a consumer of `time` sees with the default anchor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (
    PYTHON,
    READY_TIMEOUT,
    Child,
    child_env,
    exit_on_sigterm,
    percentile,
    progress,
    ratio,
    read_jsonl,
    work_dir,
)

TARGET_P99_MS = 20.0


def summary_ms(errors: list[float]) -> dict[str, Any]:
    """|error| percentiles in ms, plus the signed extremes (a negative min means a fire ran early)."""
    if not errors:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    absolute = sorted(abs(e) * 1000.0 for e in errors)
    return {
        "n": len(errors),
        "p50_ms": round(percentile(absolute, 50), 3),
        "p95_ms": round(percentile(absolute, 95), 3),
        "p99_ms": round(percentile(absolute, 99), 3),
        "max_ms": round(absolute[-1], 3),
        "mean_ms": round(sum(absolute) / len(absolute), 3),
        "signed_min_ms": round(min(errors) * 1000.0, 3),
        "signed_max_ms": round(max(errors) * 1000.0, 3),
    }


# ---- the raw ceiling -------------------------------------------------------------------------------------------


async def sleep_until(when: float) -> None:
    """A copy of hub.source.SystemClock.sleep_until."""
    while (delay := when - time.time()) > 0:
        await asyncio.sleep(min(delay, 60.0))


async def raw_ticker(ticks: int, lateness: list[float], done: asyncio.Event) -> None:
    """Sleep until each whole second; record how late the wake-up was."""
    when = float(int(time.time()) + 1)
    while len(lateness) < ticks and not done.is_set():
        await sleep_until(when)
        lateness.append(time.time() - when)
        when = float(int(time.time()) + 1)


# ---- main ------------------------------------------------------------------------------------------------------


def iso_to_epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


async def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    work = base
    out = work / "received.jsonl"
    mapping: dict[str, Any] = {"type": "schedule", "expression": "rate(1 second)"}
    if args.anchor == "whole-second":
        # any whole second in the past: fires are start + k seconds, i.e. on whole seconds
        mapping["start_date"] = datetime.fromtimestamp(int(time.time()) - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    source = ", ".join(f"{k}: {json.dumps(v)}" for k, v in mapping.items())
    config = work / "hub.yaml"
    config.write_text(
        f"""\
checkpoints: sqlite:///{work / "state.db"}
shutdown_grace: 5s
functions:
  fn: {{handler: functions.recorder.record, timeout: 10s, environment: {{RECORDER_OUT: "${{RECORDER_OUT}}"}}}}
mappings:
  - name: tick
    function: fn
    source: {{{source}}}
"""
    )
    env = child_env({"RECORDER_OUT": str(out)})
    wanted = args.fires + args.warmup

    progress(f"starting the hub ({args.fires} fires + {args.warmup} warm-up, anchor {args.anchor})")
    hub = Child("the hub", [PYTHON, "-m", "hub", "run", str(config)], work, env, work / "hub.log")
    lateness: list[float] = []
    done = asyncio.Event()
    ticker: asyncio.Task[None] | None = None
    timed_out = False
    try:
        hub.wait_log("hub running", READY_TIMEOUT)  # before the ticker starts: blocking the loop is harmless
        ticker = asyncio.create_task(raw_ticker(wanted, lateness, done))
        deadline = time.monotonic() + wanted + 30.0
        shown = -1
        while True:
            n = len(read_jsonl(out))
            if n >= wanted and (ticker.done() or len(lateness) >= wanted):
                break
            if hub.proc.poll() is not None:
                raise RuntimeError(f"the hub exited ({hub.proc.returncode}) during the run:\n{hub.log()}")
            if time.monotonic() > deadline:
                progress(f"timed out with {n}/{wanted} fires received")
                timed_out = True
                break
            if n != shown and n % 10 == 0:
                shown = n
                progress(f"{n}/{wanted} fires received")
            await asyncio.sleep(0.25)
    finally:
        done.set()
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        exit_code = hub.stop()

    entries = read_jsonl(out)
    fires = []
    for entry in entries:
        scheduled = iso_to_epoch(entry["event"]["time"])
        fires.append((scheduled, entry["received"]))
    fires.sort()
    scheduled_times = [s for s, _ in fires]
    duplicates = len(scheduled_times) - len(set(scheduled_times))
    gaps = [b - a for a, b in itertools.pairwise(scheduled_times) if b - a != 1.0]
    measured = fires[args.warmup : args.warmup + args.fires]
    errors = [received - scheduled for scheduled, received in measured]
    warm = [received - scheduled for scheduled, received in fires[: args.warmup]]
    raw = lateness[args.warmup : args.warmup + args.fires]

    hub_summary = summary_ms(errors)
    raw_summary = summary_ms(raw)
    slowest = sorted(measured, key=lambda f: abs(f[1] - f[0]), reverse=True)[:5]
    log_text = hub.log()
    problems = []
    if len(errors) < args.fires:
        problems.append(f"only {len(errors)} of {args.fires} measured fires were received")
    if duplicates:
        problems.append(f"{duplicates} fires were delivered more than once")
    if gaps:
        problems.append(f"{len(gaps)} gaps between consecutive fire times (seconds): {sorted(set(gaps))[:10]}")
    if exit_code != 0:
        problems.append(f"the hub exited {exit_code} after SIGTERM")
    if hub_summary.get("signed_min_ms") is not None and hub_summary["signed_min_ms"] < 0:
        problems.append("some fires reached the handler before their scheduled time")
    if timed_out:
        problems.append("the run timed out")
    for line in log_text.splitlines():
        if " WARNING " in line or " ERROR " in line or "Traceback" in line:
            problems.append(f"hub log: {line[:240]}")
            if len(problems) > 20:
                break

    return {
        "hub": {
            **hub_summary,
            "fires_received": len(fires),
            "warmup_fires": args.warmup,
            "warmup_error_ms": [round(w * 1000, 3) for w in warm],
            "slowest": [
                {"time": datetime.fromtimestamp(s, UTC).strftime("%H:%M:%S"), "ms": round((r - s) * 1000, 3)}
                for s, r in slowest
            ],
            "exit_code": exit_code,
        },
        "raw": {**raw_summary, "what": "asyncio.sleep to each whole second in the benchmark process"},
        "hub_over_raw": {
            q: ratio(hub_summary.get(f"{q}_ms"), raw_summary.get(f"{q}_ms")) for q in ("p50", "p99", "max")
        },
        "problems": problems,
    }


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fires", type=int, default=None, help="fires to measure (default 100, ~1 s each)")
    parser.add_argument("--warmup", type=int, default=1, help="first fires left out of the statistics (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 fires")
    parser.add_argument(
        "--anchor",
        choices=["whole-second", "default"],
        default="whole-second",
        help="whole-second: start_date on a whole second, so the event's `time` is exact (default); "
        "default: the hub's own anchor (the first start, with microseconds)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (hub log) and print its path")
    args = parser.parse_args()
    if args.fires is None:  # --quick only changes what was not given explicitly
        args.fires = 10 if args.quick else 100
    if args.fires < 1 or args.warmup < 0:
        parser.error("--fires must be >= 1 and --warmup >= 0")

    started = time.monotonic()
    with work_dir("schedule-bench-", keep=args.keep) as base:
        result = asyncio.run(run(args, base))
    p99 = result["hub"].get("p99_ms")
    report = {
        "bench": "schedule",
        "params": {
            "expression": "rate(1 second)",
            "anchor": args.anchor,
            "fires": args.fires,
            "warmup": args.warmup,
            "handler": "functions.recorder.record",
            "quick": args.quick,
        },
        "host": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "error_abs_received_minus_scheduled": {
            "hub": result["hub"],
            "raw": result["raw"],
            "hub_over_raw": result["hub_over_raw"],
        },
        "targets": {
            "p99_ms": {
                "target": f"< {TARGET_P99_MS:g}",
                "hub": p99,
                "met": p99 is not None and p99 < TARGET_P99_MS and result["hub"]["n"] >= args.fires,
            }
        },
        "problems": result["problems"],
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
