"""Warm invocation overhead of the default runtime (`python`: an execution environment in a worker process)
against `runtime: in-process`, and an environment's start time (its cold start, with a no-op handler).

Prints one JSON object. The in-process runtime is the ceiling measured in the same run; the figure that matters
is the default runtime's extra cost per invocation (target: < 2 ms).

    python bench/runtime_bench.py [--invocations N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from common import ROOT

sys.path.insert(0, str(ROOT))

from hub.config import FunctionConfig
from hub.functions import Function


def event(batch: int) -> dict[str, object]:
    record = {"messageId": "059f36b4-87a3-44ab-83d2-661975830a7d", "body": "x" * 100, "attributes": {"n": "1"}}
    return {"Records": [record] * batch}


async def per_invocation_us(fn: Function, batch: int, n: int) -> dict[str, float]:
    payload = event(batch)
    for _ in range(20):  # warm up
        await fn.runtime.invoke(payload, fn.context())
    samples = []
    for _ in range(n):
        context = fn.context()
        started = time.perf_counter()
        result = await fn.runtime.invoke(payload, context)
        samples.append((time.perf_counter() - started) * 1e6)
        assert result.ok, result.payload
    samples.sort()
    return {
        "p50_us": round(statistics.median(samples), 1),
        "p99_us": round(samples[int(len(samples) * 0.99) - 1], 1),
        "mean_us": round(statistics.fmean(samples), 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invocations", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 200 if args.quick else args.invocations
    results: dict[str, object] = {"benchmark": "runtime_bench", "invocations": n}
    python = Function(
        "py",
        FunctionConfig(runtime="in-process", handler="functions.recorder.noop"),
        region="us-east-1",
        account_id="000000000000",
    )
    await python.start()
    starts = []
    for _ in range(5 if args.quick else 20):
        fn = Function(
            "proc",
            FunctionConfig(handler="functions.recorder.noop", concurrency=1),
            region="us-east-1",
            account_id="000000000000",
        )
        started = time.perf_counter()
        await fn.start()
        starts.append((time.perf_counter() - started) * 1000)
        await fn.close()
    process = Function(
        "proc",
        FunctionConfig(handler="functions.recorder.noop", concurrency=1),
        region="us-east-1",
        account_id="000000000000",
    )
    await process.start()
    for batch in (1, 100):
        ceiling = await per_invocation_us(python, batch, n)
        measured = await per_invocation_us(process, batch, n)
        results[f"batch_{batch}"] = {
            "in_process": ceiling,
            "python": measured,
            "overhead_us_p50": round(measured["p50_us"] - ceiling["p50_us"], 1),
            "target_overhead_us": 2000,
            "meets_target": measured["p50_us"] - ceiling["p50_us"] < 2000,
        }
    results["environment_start_ms"] = {"p50": round(statistics.median(starts), 1), "max": round(max(starts), 1)}
    await process.close()
    await python.close()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
