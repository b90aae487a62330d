"""Benchmark of the PostgreSQL checkpoint store: fenced checkpoint writes per second from concurrent lanes.

    .venv/bin/python bench/store_bench.py            # 3 rounds x 5 s per variant (~35 s)
    .venv/bin/python bench/store_bench.py --quick    # 1 round x 2 s (~6 s)
    .venv/bin/python bench/store_bench.py --url postgresql://user:pw@host:5432/db --lanes 32

Prints ONE JSON object on stdout; progress goes to stderr. Runs in this process against a PostgreSQL server
(default: the machine's, postgresql://postgres@127.0.0.1:5432/postgres), in a schema of its own that it creates
and drops (`bench_store_<hex>`). Two variants, alternating over the rounds (the machine may be shared):

- `hub`: hub/postgres_store.py's `PostgresStore.put` with a `Fence`, from `--lanes` concurrent tasks, each lane
  holding its own lease and writing its own key in a loop, as the lanes of a mapping settle their positions. The
  store group-commits: the writes that arrive while a transaction runs share the next one (its pool: 4
  connections at most, one writer).
- `raw`: the ceiling of a client that does nothing but write: as many tasks as lanes, each with a connection of
  its own, one autocommit `UPDATE` of its own row per write (no fence, no lease; PostgreSQL itself merges the WAL
  flushes of concurrent commits).

A rate is writes acknowledged per second over the round; latency is per write, from the call to its return. The
ratio is the best hub round over the best raw round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from common import ROOT, progress, ratio, summary_ms

sys.path.insert(0, str(ROOT))

import asyncpg

from hub.checkpoints import Fence
from hub.postgres_store import PostgresStore

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def timed(lanes: int, seconds: float, write: Callable[[int, int], Awaitable[None]]) -> dict[str, Any]:
    """Run `write(lane, seq)` in a loop from `lanes` tasks for `seconds`; the rate and latency of the writes."""
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    end = start + seconds

    async def lane(i: int) -> None:
        seq = 0
        while time.perf_counter() < end:
            seq += 1
            began = time.perf_counter()
            try:
                await write(i, seq)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(lane(i) for i in range(lanes)))
    elapsed = time.perf_counter() - start
    return {
        "writes": len(latencies),
        "writes_per_s": round(len(latencies) / elapsed),
        "latency": summary_ms(latencies),
        "errors": errors[:5],
    }


async def hub_round(url: str, lanes: int, seconds: float) -> dict[str, Any]:
    store = PostgresStore(url)
    try:
        names = {f"bench/{i}": "bench" for i in range(lanes)}
        await store.register(names)
        fences = [Fence(name, "bench", await store.acquire(name, "bench", 3600) or 0) for name in names]
        commits = store.commits

        async def write(lane: int, seq: int) -> None:
            await store.put("bench", f"lane-{lane}", str(seq), fences[lane])

        result = await timed(lanes, seconds, write)
        made = store.commits - commits
        result["transactions"] = made
        result["writes_per_transaction"] = round(result["writes"] / made, 2) if made else None
        for fence in fences:  # free for the next round
            await store.release(fence)
        return result
    finally:
        await store.close()


async def raw_round(dsn: str, schema: str, lanes: int, seconds: float) -> dict[str, Any]:
    settings = {"search_path": schema}
    conns = [await asyncpg.connect(dsn, server_settings=settings, timeout=10) for _ in range(lanes)]
    try:
        await conns[0].execute(
            "CREATE TABLE IF NOT EXISTS raw (scope text, key text, value text, PRIMARY KEY (scope, key))"
        )
        await conns[0].executemany(
            "INSERT INTO raw VALUES ('bench', $1, '0') ON CONFLICT DO NOTHING", [(f"lane-{i}",) for i in range(lanes)]
        )

        async def write(lane: int, seq: int) -> None:
            await conns[lane].execute(
                "UPDATE raw SET value = $1 WHERE scope = 'bench' AND key = $2", str(seq), f"lane-{lane}", timeout=10
            )

        return await timed(lanes, seconds, write)
    finally:
        for conn in conns:
            await conn.close()


async def run(url: str, lanes: int, seconds: float, rounds: int) -> dict[str, Any]:
    schema = f"bench_store_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in url else "?"
    store_url = f"{url}{sep}schema={schema}"
    admin = await asyncpg.connect(url, timeout=10)
    results: dict[str, list[dict[str, Any]]] = {"hub": [], "raw": []}
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        server = await admin.fetchval("SHOW server_version")
        sync = await admin.fetchval("SHOW synchronous_commit")
        for n in range(rounds):
            for variant in ("raw", "hub") if n % 2 == 0 else ("hub", "raw"):
                progress(f"round {n + 1}/{rounds}: {variant}, {lanes} lanes, {seconds} s")
                if variant == "hub":
                    outcome = await hub_round(store_url, lanes, seconds)
                else:
                    outcome = await raw_round(url, schema, lanes, seconds)
                progress(f"  {outcome['writes_per_s']} writes/s")
                results[variant].append(outcome)
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
    best = {variant: max(rounds_, key=lambda r: r["writes_per_s"]) for variant, rounds_ in results.items()}
    problems = [f"{variant}: {error}" for variant, rs in results.items() for r in rs for error in r["errors"]]
    return {
        "benchmark": "store_bench",
        "python": platform.python_version(),
        "postgresql": server,
        "synchronous_commit": sync,
        "lanes": lanes,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "hub": best["hub"],
        "raw": best["raw"],
        "ratio": ratio(best["hub"]["writes_per_s"], best["raw"]["writes_per_s"]),
        "every_round": {variant: [r["writes_per_s"] for r in rs] for variant, rs in results.items()},
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Fenced checkpoint writes/s to PostgreSQL vs. a bare UPDATE loop.")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s per variant")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the PostgreSQL server (default {DEFAULT_URL})")
    parser.add_argument("--lanes", type=int, default=16, help="concurrent lanes (default 16)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a round (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant (default 3)")
    args = parser.parse_args()
    seconds, rounds = (2.0, 1) if args.quick else (args.seconds, args.rounds)
    print(json.dumps(asyncio.run(run(args.url, args.lanes, seconds, rounds)), indent=2))


if __name__ == "__main__":
    main()
