"""The `http` source: requests/s and latency of a no-op function behind the hub's HTTP server, against a bare ASGI
app (Starlette on uvicorn, the same server settings) answering the same request, in the same run.

Three servers, one after the other, each a process of its own, each driven by the same client (aiohttp, keep-alive
connections, `--concurrency` requests in flight, for `--seconds`):

- `bare`: the ceiling: a Starlette app on uvicorn that answers 200 with an empty body (`--bare-app PORT`);
- `hub_in_process_async`: the hub, an `http` route (HTTP API, payload 2.0) to a no-op `async def` function,
  `runtime: in-process`: what the http source itself costs (routing, the event, the invocation and its log, the
  response mapping);
- `hub_in_process`: the same with a plain `def` handler (each invocation hops to a thread, as sync handlers do);
- `hub_python`: the same with the default runtime (`python`: an execution environment in a worker process).

Prints one JSON object: requests/s, p50/p99 latency and the ratio to the bare app for each hub run.

    python bench/http_bench.py [--seconds S] [--concurrency N] [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import common
from common import PYTHON, Child, child_env, free_port, log_problems, progress, ratio, summary_ms, work_dir

SERVER_SETTINGS: dict[str, Any] = {
    "log_level": "warning",
    "access_log": False,
    "lifespan": "off",
    "server_header": False,
}
"""What connectors/http/server.py gives uvicorn: the bare app runs with the same."""


def bare_app(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        await request.body()
        return Response(b"", status_code=200, media_type="application/json")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)])
    print("bare app listening", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, **SERVER_SETTINGS)


async def drive(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """`concurrency` clients, each sending its next request when the last one is answered, for `seconds`."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def warm() -> None:
            for _ in range(20):
                async with session.get(url) as response:
                    await response.read()

        # warm up at the same concurrency: every connection open, every execution environment it needs started
        await asyncio.gather(*(warm() for _ in range(concurrency)))
        deadline = time.monotonic() + seconds

        async def client() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency": summary_ms(latencies),
    }


RUNS = {
    "hub_in_process_async": ("in-process", "functions.http_testing.noop_async"),
    "hub_in_process": ("in-process", "functions.http_testing.noop"),
    "hub_python": ("python", "functions.http_testing.noop"),
}
"""Hub runs: (runtime, handler)."""


def hub_config(port: int, runtime: str, handler: str) -> dict[str, Any]:
    function: dict[str, Any] = {"handler": handler, "runtime": runtime}
    return {
        "checkpoints": "memory://",
        "http_server": {"listen": f"127.0.0.1:{port}"},
        "functions": {"noop": function},
        "mappings": [{"function": "noop", "source": {"type": "http", "method": "GET", "path": "/bench/{id}"}}],
    }


def run_hub(work: Path, name: str, args: argparse.Namespace, problems: list[str]) -> dict[str, Any]:
    import yaml

    runtime, handler = RUNS[name]
    port = free_port()
    folder = work / name
    folder.mkdir()
    (folder / "hub.yaml").write_text(yaml.safe_dump(hub_config(port, runtime, handler)))
    hub = Child(
        name,
        [PYTHON, "-m", "hub", "run", "hub.yaml"],
        folder,
        child_env({}),
        folder / "hub.log",
    )
    try:
        hub.wait_log("hub running")
        progress(f"{name}: {args.seconds}s at concurrency {args.concurrency}")
        result = asyncio.run(drive(f"http://127.0.0.1:{port}/bench/1", args.seconds, args.concurrency))
    finally:
        code = hub.stop()
    if code != 0:
        problems.append(f"{name} exited {code} after SIGTERM")
    problems += [f"{name}: {line}" for line in log_problems(hub.log())]
    return result


def run_bare(work: Path, args: argparse.Namespace, problems: list[str]) -> dict[str, Any]:
    port = free_port()
    app = Child(
        "bare app",
        [PYTHON, str(Path(__file__).resolve()), "--bare-app", str(port)],
        work,
        child_env({}),
        work / "bare.log",
    )
    try:
        common.wait_port(port, app.proc, common.READY_TIMEOUT, "the bare app")
        progress(f"bare app: {args.seconds}s at concurrency {args.concurrency}")
        result = asyncio.run(drive(f"http://127.0.0.1:{port}/bench/1", args.seconds, args.concurrency))
    finally:
        app.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each run (default 15)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--quick", action="store_true", help="3 s runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--bare-app", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_app is not None:
        bare_app(args.bare_app)
        return
    common.exit_on_sigterm()
    if args.quick:
        args.seconds = 3.0
    problems: list[str] = []
    report: dict[str, Any] = {
        "benchmark": "http_bench",
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "function": "the no-op handlers of functions/http_testing.py (GET /bench/{id}, HTTP API payload 2.0)",
    }
    with work_dir("http_bench_", args.keep) as work:
        report["bare"] = run_bare(work, args, problems)
        for name in RUNS:
            measured = run_hub(work, name, args, problems)
            measured["ratio_to_bare"] = ratio(measured["requests_per_s"], report["bare"]["requests_per_s"])
            report[name] = measured
    for name in ("bare", *RUNS):
        if report[name]["errors"]:
            problems.append(f"{name}: {report[name]['errors']} answers were not 200")
    report["problems"] = problems
    print(json.dumps(report))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
