"""Several hubs, one PostgreSQL store: shards, schedules and a folder shared through leases, with real hub
processes killed (SIGKILL) and paused (SIGSTOP) under them.

Every hub runs the same configuration: a 4-shard Kinesis stream, a DynamoDB stream, 20 schedules at rate(1 second)
and a folder. The failover time is 3 s here, to keep the suite short (the default is 10 s).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.fixtures_aws import boto, connection, create_stream, create_table, put_records
from tests.helpers import HubProcess, read_jsonl, wait_for

SCHEDULES = 20
FAILOVER = 3.0


def cluster_config(tmp: Path, store: str, aws: str, stream: str, table: str) -> dict[str, Any]:
    fast = {"poll_interval": "50ms", "shard_discovery_interval": "1s", "connection": connection(aws)}
    return {
        "checkpoints": store,
        "cluster": {"failover_time": f"{FAILOVER}s"},
        "shutdown_grace": "5s",
        "admin": {"listen": "127.0.0.1:0"},
        "functions": {"rec": {"handler": "functions.recorder.record", "runtime": "in-process"}},
        "mappings": [
            {
                "name": "clicks",
                "function": "rec",
                "batch_size": 10,
                "source": {"type": "kinesis", "stream_name": stream, "starting_position": "TRIM_HORIZON", **fast},
            },
            {
                "name": "orders",
                "function": "rec",
                "source": {"type": "dynamodb", "table_name": table, "starting_position": "TRIM_HORIZON", **fast},
            },
            {"name": "uploads", "function": "rec", "source": {"type": "files", "path": str(tmp / "inbox")}},
            *(
                {
                    "name": f"tick-{i:02}",
                    "function": "rec",
                    "source": {"type": "schedule", "expression": "rate(1 second)", "misfire": "run_all"},
                }
                for i in range(SCHEDULES)
            ),
        ],
    }


class Cluster:
    """Hub processes sharing one configuration file; each in its own folder (its own log)."""

    def __init__(self, tmp: Path, config: dict[str, Any], out: Path) -> None:
        self.tmp = tmp
        self.config = config
        self.env = {"RECORDER_OUT": str(out)}
        self.hubs: dict[str, HubProcess] = {}

    def start(self, name: str) -> HubProcess:
        workdir = self.tmp / name
        workdir.mkdir(exist_ok=True)
        hub = HubProcess(workdir, dict(self.config), self.env)
        self.hubs[name] = hub
        return hub.start(ready="admin endpoint")

    def status(self, name: str) -> dict[str, Any]:
        hub = self.hubs[name]
        (url,) = re.findall(r"admin endpoint.*?url=(\S+)", hub.log())[-1:]
        with urllib.request.urlopen(url, timeout=5) as answer:
            return dict(json.load(answer))

    def close(self) -> None:
        for hub in self.hubs.values():
            if hub.proc is not None and hub.proc.poll() is None:
                hub.proc.kill()
                hub.proc.wait()


def held_by(cluster: Cluster, name: str) -> list[str]:
    return list(cluster.status(name)["cluster"]["held"])


def everything_held(cluster: Cluster, names: str, kinesis_shards: int) -> bool:
    """Every lease of the configuration is held by one of `names`: a lease per shard, one per other mapping."""
    held = [lease for name in names for lease in held_by(cluster, name)]
    assert len(held) == len(set(held)), f"a lease held twice: {sorted(held)}"
    return (
        sum("/kinesis/" in lease for lease in held) == kinesis_shards
        and any("/dynamodb/" in lease for lease in held)
        and sum(lease.endswith("/source") for lease in held) == SCHEDULES + 1
    )


def records_of(out: Path) -> list[dict[str, Any]]:
    """Every record every invocation received, with the pid of the hub that invoked it and when."""
    found = []
    for call in read_jsonl(out):
        event = call["event"]
        for record in event.get("Records", [event]):
            found.append({"pid": call["pid"], "received": call["received"], **record})
    return found


def kinesis_seen(out: Path) -> list[dict[str, Any]]:
    return [r for r in records_of(out) if r.get("eventSource") == "aws:kinesis"]


def test_three_hubs_share_shards_schedules_and_a_folder_through_a_kill(
    tmp_path: Path,
    moto: str,
    postgres_url: str,
) -> None:
    stream = create_stream(moto, shards=4)
    table = create_table(moto)
    out = tmp_path / "calls.jsonl"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cluster = Cluster(tmp_path, cluster_config(tmp_path, postgres_url, moto, stream, table), out)
    dynamodb = boto(moto, "dynamodb")
    placed: list[tuple[str, str]] = []

    def produce(phase: str, n: int = 100) -> None:
        placed.extend(put_records(moto, stream, [(f"key-{i % 17}", f"{phase}-{i}".encode()) for i in range(n)]))
        for i in range(10):
            dynamodb.put_item(TableName=table, Item={"id": {"S": f"{phase}-{i}"}})
            (inbox / f"{phase}-{i}.txt").write_text(phase)

    def all_seen() -> bool:
        seen = records_of(out)
        kinesis = {r["kinesis"]["sequenceNumber"] for r in seen if r.get("eventSource") == "aws:kinesis"}
        items = {r["dynamodb"]["Keys"]["id"]["S"] for r in seen if r.get("eventSource") == "aws:dynamodb"}
        files = {r["s3"]["object"]["key"] for r in seen if r.get("eventSource") == "aws:s3"}
        return (
            kinesis >= {seq for _, seq in placed}
            and len(items) == len(placed) // 10
            and len(files) == len(placed) // 10
        )

    try:
        for name in ("a", "b", "c"):
            cluster.start(name)
        wait_for(lambda: everything_held(cluster, "abc", 4), 30, "every lease to be held")
        counts = sorted(len(held_by(cluster, n)) for n in "abc")
        assert counts[-1] - counts[0] <= 1, counts  # spread evenly
        produce("one")
        wait_for(all_seen, 60, "every record of phase one")

        shards_of = {n: [lease for lease in held_by(cluster, n) if "/kinesis/" in lease] for n in "abc"}
        victim = max("abc", key=lambda n: len(shards_of[n]))
        victim_pid = cluster.hubs[victim].proc.pid  # type: ignore[union-attr]
        victim_shards = {lease.rsplit("/", 1)[1] for lease in shards_of[victim]}
        assert victim_shards
        cluster.hubs[victim].kill()
        killed_at = time.time()
        produce("two")
        wait_for(all_seen, 60, "every record of phase two, the killed hub's shards included")
        taken_over = min(
            r["received"]
            for r in kinesis_seen(out)
            if r["eventID"].split(":")[0] in victim_shards and r["received"] > killed_at
        )
        print(json.dumps({"takeover_seconds": round(taken_over - killed_at, 3), "failover_time": FAILOVER}))
        assert taken_over - killed_at < FAILOVER * 3  # a bound against a hang, not a timing target

        cluster.start(victim)  # a new process under the old name
        wait_for(lambda: len(held_by(cluster, victim)) >= 2, 30, "the restarted hub to be given leases again")
        produce("three")
        wait_for(all_seen, 60, "every record of phase three")
        for name in "abc":
            assert cluster.hubs[name].stop() == 0
    finally:
        cluster.close()

    seen = kinesis_seen(out)
    # nothing lost; per shard, the first delivery of each record comes in sequence order
    assert {r["kinesis"]["sequenceNumber"] for r in seen} >= {seq for _, seq in placed}
    first: dict[str, list[int]] = defaultdict(list)
    delivered: set[str] = set()
    for record in seen:
        seq = record["kinesis"]["sequenceNumber"]
        if seq not in delivered:
            delivered.add(seq)
            first[record["eventID"].split(":")[0]].append(int(seq))
    for shard, order in first.items():
        assert order == sorted(order), f"{shard} delivered out of order"

    # every schedule fired at every fire time from its first to its last; twice only around the kill
    fires: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records_of(out):
        if record.get("source") == "aws.events":
            fires[record["resources"][0].rsplit("/", 1)[1]][record["time"]] += 1
    assert len(fires) == SCHEDULES
    for rule, times in fires.items():
        stamps = sorted(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in times)
        assert stamps[-1] - stamps[0] + 1 == len(stamps), f"{rule} missed fire times"
        twice = [t for t, n in times.items() if n > 1]
        for t in twice:
            when = datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
            assert killed_at - 2 <= when <= killed_at + 1, f"{rule} fired {t} twice, not around the kill"
    assert all(r["pid"] != victim_pid or r["received"] <= killed_at for r in records_of(out))


def test_a_hub_paused_past_its_leases_fires_nothing_when_it_wakes(
    tmp_path: Path,
    moto: str,
    postgres_url: str,
) -> None:
    stream = create_stream(moto, shards=1)
    table = create_table(moto)
    out = tmp_path / "calls.jsonl"
    (tmp_path / "inbox").mkdir()
    cluster = Cluster(tmp_path, cluster_config(tmp_path, postgres_url, moto, stream, table), out)
    try:
        cluster.start("a")
        cluster.start("b")
        wait_for(lambda: len(held_by(cluster, "a")) >= 3 and len(held_by(cluster, "b")) >= 3, 30, "leases spread")
        paused = cluster.hubs["a"]
        assert paused.proc is not None
        os.kill(paused.proc.pid, signal.SIGSTOP)
        stopped_at = time.time()
        # b takes over every lease once a's expire (store clock), and fires a's schedules from then on
        wait_for(lambda: everything_held(cluster, "b", 1), 30, "b to hold every lease")
        os.kill(paused.proc.pid, signal.SIGCONT)
        resumed_at = time.time()
        paused.wait_log("lease lost")
        wait_for(lambda: len(held_by(cluster, "a")) >= 3, 30, "a to be given leases again")
        rejoined_at = time.time()
        for name in "ab":
            assert cluster.hubs[name].stop() == 0
    finally:
        cluster.close()

    fires = [r for r in records_of(out) if r.get("source") == "aws.events"]
    woken = [r for r in fires if r["pid"] == paused.proc.pid and resumed_at <= r["received"]]
    # after waking, a fired only what it was given again by the cluster: nothing between its wake and its rejoin
    assert not [r for r in woken if r["received"] < rejoined_at - 0.5], woken[:3]
    counts = Counter((r["resources"][0], r["time"]) for r in fires)
    twice = [key for key, n in counts.items() if n > 1]
    for _, t in twice:  # only a fire in flight when a was paused can be fired again
        when = datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
        assert stopped_at - 2 <= when <= stopped_at + 1, twice


def test_provisioned_pollers_share_a_stream_s_shards_through_leases(
    tmp_path: Path,
    moto: str,
    postgres_url: str,
) -> None:
    import asyncio

    from hub.postgres_store import PostgresStore

    stream = create_stream(moto, shards=2)
    out = tmp_path / "calls.jsonl"
    config = {
        "checkpoints": postgres_url,
        "cluster": {"failover_time": f"{FAILOVER}s"},
        "shutdown_grace": "5s",
        "functions": {"rec": {"handler": "functions.recorder.record", "runtime": "in-process"}},
        "mappings": [
            {
                "name": "clicks",
                "function": "rec",
                "provisioned_poller_config": {"minimum_pollers": 2},
                "source": {
                    "type": "kinesis",
                    "stream_name": stream,
                    "starting_position": "TRIM_HORIZON",
                    "poll_interval": "50ms",
                    "connection": connection(moto),
                },
            }
        ],
    }

    async def owners() -> set[str]:
        store = PostgresStore(postgres_url)
        try:
            return {row.owner for row in await store.leases() if row.held and row.owner}
        finally:
            await store.close()

    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: len(asyncio.run(owners())) == 2, 30, "each poller to hold a shard")
        placed = put_records(moto, stream, [(f"key-{i}", f"r{i}".encode()) for i in range(40)])
        wait_for(lambda: len(kinesis_seen(out)) >= len(placed), 30, "every record")
        assert hub.stop() == 0
    seen = kinesis_seen(out)
    assert {r["kinesis"]["sequenceNumber"] for r in seen} == {seq for _, seq in placed}
    readers = {(r["eventID"].split(":")[0], r["pid"]) for r in seen}
    assert len(readers) == 2 and len({pid for _, pid in readers}) == 2  # two processes, a shard each
