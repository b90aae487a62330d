"""Several poller processes for one mapping (`provisioned_poller_config`), against a real Kafka broker (tansu).

The hub's own process is poller 1 and starts the others; they share the partitions through the consumer group.
These tests run `hub run` as a user does and watch the processes: every record delivered, invocations from
several process ids, a killed poller restarted, no poller left behind by a stop or by the hub's death. The
first tests drive `hub.pollers.Pollers` directly with small stand-in commands, for what needs no broker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hub import pollers
from hub.config import HubConfig, load_config
from hub.dispatch import Backoff
from tests.fixtures_kafka import create_topic, numbered, produce, unique
from tests.helpers import HubProcess, read_jsonl, run_cli, wait_for

FAST = {"session_timeout": "2s", "fetch_max_wait": "20ms", "rebalance_grace": "2s"}
"""Against tansu: a join waits about half the session timeout, and a waiting fetch is not answered early."""


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the supervisor on its own ------------------------------------------------------------------------------------


def sleeper(ready: Path, ignore_sigterm: bool = False) -> pollers.Command:
    """A stand-in child that sleeps (and perhaps ignores SIGTERM), once ready writing a file `ready/<pid>`."""
    code = (
        "import os, pathlib, signal, sys, time\n"
        f"if {ignore_sigterm}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pathlib.Path(sys.argv[1], str(os.getpid())).write_text('')\n"
        "time.sleep(120)\n"
    )
    ready.mkdir(exist_ok=True)
    return lambda mapping, index: [sys.executable, "-c", code, str(ready)]


def config_with_pollers(tmp: Path, count: int) -> HubConfig:
    path = tmp / "hub.yaml"
    path.write_text(
        "functions:\n"
        "  f: {handler: functions.recorder.record}\n"
        "mappings:\n"
        "  - name: orders\n"
        "    function: f\n"
        f"    provisioned_poller_config: {{minimum_pollers: {count}, maximum_pollers: {count}}}\n"
        "    source: {type: kafka, bootstrap_servers: '127.0.0.1:1', topic: t, starting_position: LATEST}\n"
    )
    return load_config(path)


async def eventually(condition: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := condition()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


async def test_supervisor_restarts_a_dead_child_and_stops_every_child(tmp_path: Path) -> None:
    supervisor = pollers.Pollers(
        config_with_pollers(tmp_path, 3), sleeper(tmp_path / "ready"), backoff=Backoff(0.01, 0.05)
    )
    assert [(c.mapping, c.index) for c in supervisor.children] == [("orders", 2), ("orders", 3)]
    await supervisor.start()
    try:
        first = [c.pid for c in supervisor.children]
        assert all(pid is not None and alive(pid) for pid in first)
        os.kill(first[0], signal.SIGKILL)
        await eventually(lambda: supervisor.children[0].restarts == 1, what="the killed child to be restarted")
        child = supervisor.children[0]
        assert child.pid != first[0] and child.running
        (entry,) = supervisor.status()["orders"][1:2]
        assert entry == {"poller": 2, "pid": child.pid, "restarts": 1, "running": True}
        assert supervisor.status()["orders"][0]["pid"] == os.getpid()
    finally:
        await supervisor.stop(1.0)
    assert not any(alive(c.pid) for c in supervisor.children if c.pid is not None)
    assert all(c.proc is not None and c.proc.returncode == -signal.SIGTERM for c in supervisor.children)
    await supervisor.stop(1.0)  # twice is fine


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pollers, "KILL_AFTER", 0.2)
    ready = tmp_path / "ready"
    supervisor = pollers.Pollers(config_with_pollers(tmp_path, 2), sleeper(ready, ignore_sigterm=True))
    try:
        await supervisor.start()
        (child,) = supervisor.children
        await eventually(lambda: (ready / str(child.pid)).exists(), what="the child to ignore SIGTERM")
        await asyncio.wait_for(supervisor.stop(0.1), 10)
    finally:
        await supervisor.stop(0)
    assert child.proc is not None and child.proc.returncode == -signal.SIGKILL


def test_exit_status_reads_as_words() -> None:
    assert pollers.exit_status(0) == "exit 0"
    assert pollers.exit_status(3) == "exit 3"
    assert pollers.exit_status(-signal.SIGKILL) == "killed by SIGKILL"


# ---- the hub with a Kafka mapping run by two processes ------------------------------------------------------------


def hub_config(tmp: Path, bootstrap: str, topic: str, group: str, pollers: int = 2, **mapping: Any) -> dict[str, Any]:
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": "functions.recorder.slow", "timeout": "10s"}},
        "mappings": [
            {
                "name": "orders",
                "function": "fn",
                "batch_size": 10,
                "maximum_batching_window": "20ms",
                "provisioned_poller_config": {"minimum_pollers": pollers, "maximum_pollers": pollers},
                "source": {
                    "type": "kafka",
                    "bootstrap_servers": bootstrap,
                    "topic": topic,
                    "consumer_group_id": group,
                    "starting_position": "TRIM_HORIZON",
                    **FAST,
                },
                **mapping,
            }
        ],
    }


def handled(out: Path) -> list[tuple[str, int]]:
    """(record id, pid of the hub process whose function got it), for every record delivered, in call order. The
    function runs in an execution environment of that hub: a child process of it."""
    rows = []
    for entry in read_jsonl(out):
        for records in entry["event"]["records"].values():
            for record in records:
                rows.append((json.loads(base64.b64decode(record["value"]))["id"], entry["ppid"]))
    return rows


def ids(out: Path) -> Counter[str]:
    return Counter(record_id for record_id, _ in handled(out))


def poller_pids(hub: HubProcess, count: int = 2) -> list[int]:
    """The pids the hub logged for mapping `orders` (its own first)."""
    hub.wait_log(f"mapping orders: {count} pollers (pids ")
    found = re.search(rf"mapping orders: {count} pollers \(pids ([\d, ]+)\)", hub.log())
    assert found, hub.log()
    return [int(pid) for pid in found.group(1).split(", ")]


def poller_lines(hub: HubProcess, text: str, index: int = 2, after: str = "") -> list[str]:
    """The log lines of poller `index` (a child process) that contain `text`, after the last line with `after`."""
    lines = hub.log().split(after)[-1].splitlines() if after else hub.log().splitlines()
    return [line for line in lines if text in line and f" poller={index} " in f"{line} "]


def test_two_pollers_share_a_topic_and_deliver_every_record(tmp_path: Path, tansu: str) -> None:
    topic, group, out, port = unique("t"), unique("g"), tmp_path / "calls.jsonl", free_port()
    create_topic(tansu, topic, 4)
    config = {**hub_config(tmp_path, tansu, topic, group), "admin": {"listen": f"127.0.0.1:{port}"}}
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.01"}) as hub:
        hub.start()
        parent, child = poller_pids(hub)
        assert parent == hub.proc.pid  # type: ignore[union-attr]
        wait_for(lambda: poller_lines(hub, "partitions assigned"), 30, "the second poller to get partitions")
        produce(tansu, topic, numbered(4, 400))
        wait_for(lambda: len(ids(out)) == 400, 60, "every record")
        assert set(ids(out)) == {f"r{i}" for i in range(400)}
        assert {pid for _, pid in handled(out)} == {parent, child}, "both pollers invoked the function"
        assert poller_lines(hub, "hub running"), "every line of a poller carries poller=<i>"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            body = response.read().decode()
        (mapping,) = json.loads(body)["mappings"]
        assert [(p["poller"], p["pid"], p["restarts"]) for p in mapping["pollers"]] == [(1, parent, 0), (2, child, 0)]
        assert tansu not in body and group not in body, "no source setting in /status"
        assert hub.stop() == 0
    assert not alive(child)


def test_a_killed_poller_is_restarted_and_nothing_is_lost(tmp_path: Path, tansu: str) -> None:
    topic, group, out = unique("t"), unique("g"), tmp_path / "calls.jsonl"
    create_topic(tansu, topic, 4)
    with HubProcess(
        tmp_path, hub_config(tmp_path, tansu, topic, group), {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.1"}
    ) as hub:
        hub.start()
        parent, child = poller_pids(hub)
        wait_for(lambda: poller_lines(hub, "partitions assigned"), 30, "the second poller to get partitions")
        produce(tansu, topic, numbered(4, 1200))  # 30 slow batches a partition: seconds of work for each poller
        wait_for(lambda: sum(pid == child for _, pid in handled(out)) >= 20, 30, "the second poller to make progress")
        os.kill(child, signal.SIGKILL)
        assert len(ids(out)) < 1200, "the kill came mid-stream"
        hub.wait_log(f"poller 2 (pid {child}) exited unexpectedly (killed by SIGKILL)")
        hub.wait_log("mapping orders: poller 2 restarted (pid ")
        restarted = int(re.findall(r"poller 2 restarted \(pid (\d+)\)", hub.log())[-1])
        assert restarted != child and alive(restarted)
        wait_for(lambda: len(ids(out)) == 1200, 90, "every record of the first half")
        # the restarted poller joins the group again and takes its share of what comes next
        wait_for(
            lambda: poller_lines(hub, "partitions assigned", after=f"restarted (pid {restarted})"),
            30,
            "the restarted poller to get partitions",
        )
        produce(tansu, topic, numbered(4, 200, prefix="s"))
        wait_for(lambda: len(ids(out)) == 1400, 60, "every record of the second half")
        assert hub.stop() == 0
    expected = {f"r{i}" for i in range(1200)} | {f"s{i}" for i in range(200)}
    assert set(ids(out)) == expected
    assert {pid for record_id, pid in handled(out) if record_id.startswith("s")} == {parent, restarted}


def test_a_poller_that_cannot_start_shows_in_healthz_until_it_runs_again(tmp_path: Path, tansu: str) -> None:
    """A child that dies and keeps failing to start (here: its configuration file broke since the hub read it) is
    named by /healthz (503) while it is down, and no longer once it runs again."""
    topic, group, port = unique("t"), unique("g"), free_port()
    create_topic(tansu, topic, 2)
    config = {**hub_config(tmp_path, tansu, topic, group), "admin": {"listen": f"127.0.0.1:{port}"}}
    url = f"http://127.0.0.1:{port}/healthz"

    def health() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    with HubProcess(tmp_path, config) as hub:
        hub.start()
        _, child = poller_pids(hub)
        wait_for(lambda: health()[0] == 200, 30, "a healthy hub")
        good = hub.config_path.read_text()
        hub.config_path.write_text(good.replace("minimum_pollers", "minimum_polers"))  # the child reads it anew
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: health() == (503, {"ok": False, "not_running": ["orders (poller 2)"]}), 30, "the child down")
        hub.config_path.write_text(good)
        wait_for(lambda: health()[0] == 200, 60, "the child running again")
        assert "poller 2 restarted" in hub.log()
        assert hub.stop() == 0


def test_sigterm_stops_every_poller_and_exits_0(tmp_path: Path, tansu: str) -> None:
    topic, group, out = unique("t"), unique("g"), tmp_path / "calls.jsonl"
    create_topic(tansu, topic, 4)
    with HubProcess(tmp_path, hub_config(tmp_path, tansu, topic, group, pollers=3), {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        _, *children = poller_pids(hub, 3)
        assert len(children) == 2 and all(alive(pid) for pid in children)
        wait_for(lambda: len(poller_lines(hub, "hub running", 3)) == 1, 30, "the third poller to run")
        produce(tansu, topic, numbered(4, 40))
        wait_for(lambda: len(ids(out)) == 40, 30, "every record")
        assert hub.stop(signal.SIGTERM) == 0
        assert "stopping 2 poller processes" in hub.log()
        assert poller_lines(hub, "hub stopped", 2) and poller_lines(hub, "hub stopped", 3), "they stopped gracefully"
    assert not any(alive(pid) for pid in children)


def test_a_poller_whose_hub_died_stops(tmp_path: Path, tansu: str) -> None:
    topic, group = unique("t"), unique("g")
    create_topic(tansu, topic, 2)
    with HubProcess(tmp_path, hub_config(tmp_path, tansu, topic, group), {"RECORDER_OUT": "/dev/null"}) as hub:
        hub.start()
        _, child = poller_pids(hub)
        wait_for(lambda: poller_lines(hub, "hub running"), 30, "the second poller to run")
        hub.kill()
        wait_for(lambda: not alive(child), 30, "the orphaned poller to stop")
        assert poller_lines(hub, "is gone: stopping this poller") and poller_lines(hub, "hub stopped")


# ---- configuration errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ({"type": "schedule", "expression": "rate(1 minute)"}, "schedule pollers share the work through leases"),
        ({"type": "files", "path": "./inbox"}, "files pollers share the work through leases"),
    ],
)
def test_pollers_of_a_leased_source_on_sqlite_exit_2_naming_the_line(
    tmp_path: Path, source: dict[str, Any], needle: str
) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "functions:\n"
        "  f: {handler: functions.recorder.record}\n"
        "mappings:\n"
        "  - function: f\n"
        f"    source: {json.dumps(source)}\n"
        "    provisioned_poller_config:\n"
        "      minimum_pollers: 2\n"
    )
    result = run_cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert f"{path}:7:" in result.stderr and "mappings[0].provisioned_poller_config: " in result.stderr
    assert needle in result.stderr and "use checkpoints: postgresql://... or redis://..." in result.stderr


def test_maximum_below_minimum_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(
        "functions:\n"
        "  f: {handler: functions.recorder.record}\n"
        "mappings:\n"
        "  - function: f\n"
        "    source: {type: kafka, bootstrap_servers: '127.0.0.1:1', topic: t, starting_position: LATEST}\n"
        "    provisioned_poller_config:\n"
        "      minimum_pollers: 4\n"
        "      maximum_pollers: 2\n"
    )
    result = run_cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert f"{path}:8:" in result.stderr
    assert "mappings[0].provisioned_poller_config.maximum_pollers: 2 is less than minimum_pollers (4)" in result.stderr


def test_cpu_affinity_is_ignored_and_only_the_hub_warns_naming_the_line(
    tmp_path: Path,
    tansu: str,
) -> None:
    """`cpu_affinity` is deprecated (hub/cli.py DEPRECATED): no process is pinned, and the warning comes once, from
    the hub, not again from each poller that loads the same file."""
    topic, group = unique("t"), unique("g")
    create_topic(tansu, topic, 2)
    config = hub_config(tmp_path, tansu, topic, group)
    config["cpu_affinity"] = True
    everything = os.sched_getaffinity(0)
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        parent, child = poller_pids(hub)
        wait_for(lambda: poller_lines(hub, "partitions assigned"), 30, "the second poller to get partitions")
        lines = hub.config_path.read_text().splitlines()
        line = 1 + next(n for n, text in enumerate(lines) if text.startswith("cpu_affinity:"))
        warnings = [text for text in hub.log().splitlines() if "cpu_affinity: deprecated and ignored" in text]
        assert len(warnings) == 1, warnings
        assert f"{hub.config_path}:{line}:" in warnings[0] and " poller=" not in warnings[0]
        assert os.sched_getaffinity(parent) == everything
        assert os.sched_getaffinity(child) == everything
        assert hub.stop() == 0
