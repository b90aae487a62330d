"""Benchmark of the `files` source: latency at a steady rate (files closed in place, files renamed into the
folder) and throughput of a burst, hub vs. bare watchdog.

    .venv/bin/python bench/files_bench.py            # full run (~1-2 min): 1,000 files at 100/s, then 10,000
    .venv/bin/python bench/files_bench.py --quick    # smoke run (~15 s)

Prints ONE JSON object on stdout; progress goes to stderr. See bench/README.md for what the numbers mean.

Every observer runs as a real subprocess in a fresh temporary folder, while this process writes the files:

- hub:  `python -m hub run hub.yaml` with one `files` mapping -> functions.recorder.record (max_concurrency 10);
        a file's latency is the handler's `received` minus the moment this process closed (or renamed) the file.
- raw:  a bare watchdog Observer (this file run with `--raw-watcher`) whose handler only records time.time()
        on each `closed` event (`moved`/`created` of the final name in the rename workload): the ceiling the hub
        cannot beat, measured on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from common import (
    PYTHON,
    READY_TIMEOUT,
    Child,
    child_env,
    exit_on_sigterm,
    log_problems,
    progress,
    ratio,
    read_jsonl,
    summary_ms,
    work_dir,
)

PAYLOAD = b"benchmark payload: a small file of one hundred bytes.......................................\n"
TARGET_LATENCY_P99_MS = 100.0
TARGET_RATE = 100.0
RENAME_SETTLE_TIME = "1s"  # the files source's default: a renamed file must not wait for it


# ---- processes -------------------------------------------------------------------------------------------------


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def wait_for_count(counter: Any, expected: int, *, timeout: float, stall: float, what: str) -> int:
    """Poll counter() until it reaches `expected`; give up after `timeout`, or `stall` seconds without progress."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while True:
        n = counter()
        now = time.monotonic()
        if n >= expected:
            return n
        if n != last:
            last, last_change = n, now
        if now > deadline:
            progress(f"{what}: timed out after {timeout:.0f}s with {n}/{expected}")
            return n
        if now - last_change > stall:
            progress(f"{what}: no progress for {stall:.0f}s, stopping at {n}/{expected}")
            return n
        time.sleep(0.05)


# ---- the writer ------------------------------------------------------------------------------------------------


def write_files(
    folder: Path, prefix: str, count: int, rate: float | None, staging: Path | None = None
) -> dict[str, float]:
    """Write `count` small files (at `rate` per second, or as fast as possible); return name -> close time.

    With `staging`, every file is an upload renamed into place, and the time is the rename's: even files are
    written in the folder as `NAME.tmp` (which the mapping's suffix filters out) and renamed to NAME; odd files
    are written in `staging` (another folder on the same file system) and moved into the folder.
    """
    closed: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        name = f"{prefix}-{i:06d}.dat"
        written = folder / name
        if staging is not None:
            written = folder / f"{name}.tmp" if i % 2 == 0 else staging / name
        fd = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, PAYLOAD)
        finally:
            # taken just before close(): inotify's IN_CLOSE_WRITE is queued inside close(), so a watcher can see
            # it before close() returns here; a time taken after close() can make latencies come out negative.
            closed[name] = time.time()
            os.close(fd)
        if staging is not None:
            closed[name] = time.time()  # the same holds for rename() and its IN_MOVED_TO
            os.rename(written, folder / name)
    return closed


# ---- one run: a workload against one observer ------------------------------------------------------------------


def hub_config(work: Path, inbox: Path, max_concurrency: int, rescan: float, settle: str) -> str:
    out = work / "received.jsonl"
    return f"""\
checkpoints: sqlite:///{work / "state.db"}
shutdown_grace: 5s
functions:
  fn: {{handler: functions.recorder.record, timeout: 10s, environment: {{RECORDER_OUT: "{out}"}}}}
mappings:
  - name: inbox
    function: fn
    max_concurrency: {max_concurrency}
    source: {{type: files, path: {inbox}, suffix: .dat, settle_time: {settle}, rescan_interval: {rescan:g}}}
"""


def start_observer(
    kind: str, workload: str, work: Path, inbox: Path, max_concurrency: int, rescan: float
) -> tuple[Child, Path]:
    out = work / "received.jsonl"
    if kind == "hub":
        config = work / "hub.yaml"
        settle = RENAME_SETTLE_TIME if workload == "rename" else "200ms"
        config.write_text(hub_config(work, inbox, max_concurrency, rescan, settle))
        argv = [PYTHON, "-m", "hub", "run", str(config)]
        child = Child("hub", argv, work, child_env({"RECORDER_OUT": str(out)}), work / "hub.log")
    else:
        mode = "renamed" if workload == "rename" else "closed"
        argv = [PYTHON, str(Path(__file__).resolve()), "--raw-watcher", str(inbox), str(out), mode]
        child = Child("raw watcher", argv, work, child_env({}), work / "raw.log")
    try:
        child.wait_log("watching", READY_TIMEOUT)
    except BaseException:
        child.stop()
        raise
    return child, out


def read_received(kind: str, out: Path) -> tuple[dict[str, float], int]:
    """name -> first receive time, and the number of duplicate deliveries."""
    received: dict[str, float] = {}
    duplicates = 0
    for entry in read_jsonl(out):
        if kind == "hub":
            name = unquote_plus(entry["event"]["Records"][0]["s3"]["object"]["key"])
            when = entry["received"]
        else:
            name, when = entry["name"], entry["received"]
        if name in received:
            duplicates += 1
            received[name] = min(received[name], when)
        else:
            received[name] = when
    return received, duplicates


def run_workload(
    kind: str,
    workload: str,
    base: Path,
    count: int,
    rate: float | None,
    max_concurrency: int,
    rescan: float = 0.0,
    preload: int = 0,
) -> dict[str, Any]:
    work = base / f"{workload}-{kind}"
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    staging = work / "staging" if workload == "rename" else None
    if staging is not None:
        staging.mkdir()
    if preload:
        progress(f"{workload}/{kind}: preloading {preload} files already in the folder")
        write_files(inbox, "preload", preload, None)
    progress(f"{workload}/{kind}: starting the observer")
    child, out = start_observer(kind, workload, work, inbox, max_concurrency, rescan)
    if kind == "hub":
        counter = lambda: count_lines(out)  # noqa: E731
    else:
        count_file = out.with_suffix(".count")
        counter = lambda: int(count_file.read_text() or 0) if count_file.exists() else 0  # noqa: E731
    # the hub handles preloaded files at its start (the startup scan); the raw watcher never sees them
    before = preload if kind == "hub" else 0
    try:
        if before:
            progress(f"{workload}/{kind}: waiting for the hub to handle the {preload} preloaded files")
            got = wait_for_count(counter, before, timeout=max(60.0, before / 50.0), stall=15.0, what="preload")
            if got < before:
                raise RuntimeError(f"the hub handled only {got} of the {before} preloaded files")
        time.sleep(0.5)  # let the observer's process settle (imports, threads) before the clock starts
        what = f"{count} files at {rate:g}/s" if rate else f"{count} files as fast as possible"
        progress(f"{workload}/{kind}: writing {what}")
        closed = write_files(inbox, workload, count, rate, staging)
        first_close, last_close = min(closed.values()), max(closed.values())
        progress(f"{workload}/{kind}: written in {last_close - first_close:.2f}s; waiting for the observer to drain")
        wait_for_count(
            counter, before + count, timeout=max(60.0, count / 50.0), stall=15.0, what=f"{workload}/{kind} drain"
        )
    finally:
        exit_code = child.stop()
    received, duplicates = read_received(kind, out)
    received = {name: t for name, t in received.items() if name in closed}
    latencies = [received[name] - t for name, t in closed.items() if name in received]
    missing = [name for name in closed if name not in received]
    result: dict[str, Any] = {
        "files": count,
        "preloaded_files": preload,
        "received": len(latencies),
        "missing": len(missing),
        "duplicates": duplicates,
        "write_seconds": round(last_close - first_close, 3),
        "write_rate_per_s": round((count - 1) / (last_close - first_close), 1) if count > 1 else None,
        "latency": summary_ms(latencies, none_if_empty=True),
        "exit_code": exit_code,
    }
    if staging is not None:  # the two kinds of rename apart: even files within the folder, odd ones from outside
        for part, parity in (("latency_renamed_within_folder", 0), ("latency_moved_in_from_outside", 1)):
            lat = [received[n] - t for i, (n, t) in enumerate(closed.items()) if i % 2 == parity and n in received]
            result[part] = summary_ms(lat, none_if_empty=True)
    if missing:
        result["missing_examples"] = missing[:5]
    if received:
        span = max(received.values()) - first_close
        result["first_close_to_last_received_s"] = round(span, 3)
        result["throughput_files_per_s"] = round(len(latencies) / span, 1) if span > 0 else None
    log_text = child.log()
    result["inotify_overflows"] = log_text.count("Inotify queue overflowed; filesystem events were lost")
    if kind == "hub":
        result["rescan_interval_s"] = rescan
        result["log_problems"] = log_problems(log_text, ignore=["Inotify queue overflowed"])
        if child.killed:
            result["killed_after_sigterm"] = True
    # the slowest files, to look them up in the hub's log (kept with --keep)
    slowest = sorted(((received[n] - t, n) for n, t in closed.items() if n in received), reverse=True)[:3]
    result["slowest"] = [{"file": n, "ms": round(s * 1000, 1), "closed_at": round(closed[n], 3)} for s, n in slowest]
    progress(
        f"{workload}/{kind}: {len(latencies)}/{count} received, p50 {result['latency']['p50_ms']} ms, "
        f"p99 {result['latency']['p99_ms']} ms, max {result['latency']['max_ms']} ms"
    )
    return result


# ---- the raw watcher (a subprocess) ----------------------------------------------------------------------------


def raw_watcher(folder: str, out: str, mode: str) -> int:
    """A bare watchdog Observer: record time.time() for each `closed` event; dump everything on SIGTERM.

    mode `renamed`: record the final name's `moved` (renamed within the folder) or `created` (moved in from
    outside: watchdog's plain observer reports it so) instead.
    """
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    times: list[tuple[str, float]] = []
    root = os.path.abspath(folder)

    class Recorder(FileSystemEventHandler):
        def on_closed(self, event: Any) -> None:
            if mode == "closed":
                times.append((os.fsdecode(event.src_path), time.time()))

        def on_moved(self, event: Any) -> None:
            if mode == "renamed":
                times.append((os.fsdecode(event.dest_path), time.time()))

        def on_created(self, event: Any) -> None:
            if mode == "renamed" and os.fsdecode(event.src_path).endswith(".dat"):
                times.append((os.fsdecode(event.src_path), time.time()))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    observer = Observer()
    observer.schedule(Recorder(), root, recursive=True)
    observer.start()
    print("raw watcher: watching", root, file=sys.stderr, flush=True)
    count_path = out + ".count" if not out.endswith(".jsonl") else out[: -len(".jsonl")] + ".count"
    shown = -1
    while not stop.wait(0.05):
        if len(times) != shown:
            shown = len(times)
            tmp = count_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(shown))
            os.replace(tmp, count_path)
    observer.stop()
    observer.join(5)
    with open(out, "w") as f:
        for path, when in times:
            f.write(json.dumps({"name": os.path.relpath(path, root), "received": when}) + "\n")
    return 0


def read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


# ---- main ------------------------------------------------------------------------------------------------------


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=None, help="files in the throughput burst (default 10000)")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="files/s of the latency run (default 100)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="length of the latency run (default 10)")
    parser.add_argument("--max-concurrency", type=int, default=10, help="the mapping's max_concurrency (default 10)")
    parser.add_argument(
        "--throughput-rescan",
        type=float,
        default=0.0,
        help="the hub's rescan_interval (s) in the throughput run; > 0 drains files whose inotify events the "
        "kernel dropped (queue overflow), at the cost of the rescans' own work (default 0: the watcher alone)",
    )
    parser.add_argument(
        "--latency-rescan",
        type=float,
        default=0.0,
        help="the hub's rescan_interval (s) in the latency run (default 0; the hub's own default is 30)",
    )
    parser.add_argument(
        "--preload",
        type=int,
        default=0,
        help="files already in the folder (handled at the hub's start) before the latency run (default 0)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 200-file burst, 3 s latency run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (hub logs) and print its path")
    parser.add_argument("--skip-raw", action="store_true", help="measure the hub only")
    parser.add_argument("--raw-watcher", nargs=3, metavar=("FOLDER", "OUT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_watcher:
        return raw_watcher(*args.raw_watcher)
    # --quick only changes what was not given explicitly
    if args.files is None:
        args.files = 200 if args.quick else 10000
    if args.latency_seconds is None:
        args.latency_seconds = 3.0 if args.quick else 10.0
    latency_files = max(2, round(args.rate * args.latency_seconds))

    import watchdog.version

    report: dict[str, Any] = {
        "bench": "files",
        "params": {
            "latency_files": latency_files,
            "latency_rate_per_s": args.rate,
            "latency_seconds": args.latency_seconds,
            "throughput_files": args.files,
            "max_concurrency": args.max_concurrency,
            "handler": "functions.recorder.record",
            "settle_time": "200ms",
            "settle_time_rename": RENAME_SETTLE_TIME,
            "rescan_interval_latency_s": args.latency_rescan,
            "preloaded_files_latency": args.preload,
            "rescan_interval_throughput_s": args.throughput_rescan,
            "quick": args.quick,
        },
        "host": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "watchdog": watchdog.version.VERSION_STRING,
            "inotify_max_queued_events": read_int("/proc/sys/fs/inotify/max_queued_events"),
        },
    }
    started = time.monotonic()
    with work_dir("files-bench-", keep=args.keep) as base:
        kinds = ["hub"] if args.skip_raw else ["raw", "hub"]
        latency = {
            k: run_workload(
                k, "latency", base, latency_files, args.rate, args.max_concurrency, args.latency_rescan, args.preload
            )
            for k in kinds
        }
        rename = {
            k: run_workload(k, "rename", base, latency_files, args.rate, args.max_concurrency, args.latency_rescan)
            for k in kinds
        }
        throughput = {
            k: run_workload(k, "throughput", base, args.files, None, args.max_concurrency, args.throughput_rescan)
            for k in kinds
        }
    hub_l, raw_l = latency["hub"]["latency"], latency.get("raw", {}).get("latency", {})
    report["latency"] = {
        **latency,
        "hub_over_raw": {q: ratio(hub_l.get(f"{q}_ms"), raw_l.get(f"{q}_ms")) for q in ("p50", "p95", "p99", "max")},
    }
    hub_r, raw_r = rename["hub"]["latency"], rename.get("raw", {}).get("latency", {})
    report["rename"] = {
        **rename,
        "hub_over_raw": {q: ratio(hub_r.get(f"{q}_ms"), raw_r.get(f"{q}_ms")) for q in ("p50", "p95", "p99", "max")},
    }
    report["throughput"] = {
        **throughput,
        "hub_over_raw": ratio(
            throughput["hub"].get("throughput_files_per_s"), throughput.get("raw", {}).get("throughput_files_per_s")
        ),
    }
    report["targets"] = {
        f"{name}_p99_ms_at_100_per_s": {
            "target": f"< {TARGET_LATENCY_P99_MS:g}",
            "hub": (p99 := run["hub"]["latency"].get("p99_ms")),
            "met": p99 is not None and p99 < TARGET_LATENCY_P99_MS and run["hub"]["missing"] == 0,
            "comparable": args.rate == TARGET_RATE,
        }
        for name, run in (("latency", latency), ("rename_latency", rename))
    }
    problems = []
    for workload, runs in (("latency", latency), ("rename", rename), ("throughput", throughput)):
        for kind, run in runs.items():
            if run["missing"]:
                problems.append(f"{workload}/{kind}: {run['missing']} of {run['files']} files never received")
            if run["duplicates"]:
                problems.append(f"{workload}/{kind}: {run['duplicates']} duplicate deliveries")
            if run.get("inotify_overflows"):
                problems.append(
                    f"{workload}/{kind}: the kernel's inotify queue overflowed {run['inotify_overflows']}x "
                    "(events lost; only a rescan finds those files)"
                )
            if run["exit_code"] != 0:
                problems.append(f"{workload}/{kind}: exit code {run['exit_code']} after SIGTERM")
            problems.extend(f"{workload}/{kind} log: {p}" for p in run.get("log_problems", []))
    report["problems"] = problems
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
