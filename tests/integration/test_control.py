"""Live control of a running hub (a real process, a real Kafka-compatible broker): disable and enable a mapping
mid-stream, change it, reload the configuration file on SIGHUP, refuse an invalid file; the `hub status`,
`hub disable`, `hub enable`, `hub update` and `hub reload` commands; the admin token."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures_kafka import create_topic, produce, unique
from tests.fixtures_redis import free_port
from tests.helpers import HubProcess, read_jsonl, run_cli, wait_for


def config(port: int, bootstrap: str, orders: str, audit: str, **orders_settings: Any) -> dict[str, Any]:
    def kafka(topic: str) -> dict[str, Any]:
        return {
            "type": "kafka",
            "bootstrap_servers": bootstrap,
            "topic": topic,
            "starting_position": "TRIM_HORIZON",
            "consumer_group_id": unique("group"),
        }

    return {
        "checkpoints": "memory://",
        "shutdown_grace": "10s",
        "admin": {"listen": f"127.0.0.1:{port}"},
        "functions": {"rec": {"handler": "functions.recorder.slow", "runtime": "in-process"}},
        "mappings": [
            {"name": "orders", "function": "rec", "batch_size": 5, "source": kafka(orders), **orders_settings},
            {"name": "audit", "function": "rec", "batch_size": 5, "source": kafka(audit)},
        ],
    }


def ids(out: Path, topic: str) -> list[str]:
    found = []
    for call in read_jsonl(out):
        for records in call["event"].get("records", {}).values():
            for record in records:
                if record["topic"] == topic:
                    import base64

                    found.append(json.loads(base64.b64decode(record["value"]))["id"])
    return found


def messages(prefix: str, count: int, kind: str = "any") -> list[Any]:
    return [(0, None, json.dumps({"id": f"{prefix}{i}", "kind": kind}).encode(), []) for i in range(count)]


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        return dict(json.load(answer))


def mapping(port: int, name: str) -> dict[str, Any]:
    answer = status(port)
    for entry in answer["mappings"] + answer["stopped_mappings"]:
        if entry["name"] == name:
            return dict(entry)
    raise AssertionError(f"no mapping {name} in {answer}")


def test_disable_mid_stream_and_enable_again_loses_and_repeats_nothing(tmp_path: Path, tansu: str) -> None:
    orders, audit = unique("orders"), unique("audit")
    for topic in (orders, audit):
        create_topic(tansu, topic)
    port, out = free_port(), tmp_path / "calls.jsonl"
    url = f"http://127.0.0.1:{port}"
    with HubProcess(
        tmp_path, config(port, tansu, orders, audit), {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.02"}
    ) as hub:
        hub.start(ready="admin endpoint")
        produce(tansu, orders, messages("a", 200))
        wait_for(lambda: len(ids(out, orders)) >= 20, 30, "the first batches")
        disabled = run_cli("disable", "orders", "--url", url)
        assert disabled.returncode == 0, disabled.stderr
        assert disabled.stdout.strip() == "orders: Disabled"
        at_disable = len(ids(out, orders))
        assert mapping(port, "orders")["State"] == "Disabled"
        assert 20 <= at_disable < 200  # stopped mid-stream: its in-flight batch finished, nothing more was read
        produce(tansu, orders, messages("b", 50))
        shown = run_cli("status", "--url", url)
        assert shown.returncode == 0 and "orders" in shown.stdout and "Disabled" in shown.stdout, shown.stdout
        assert len(ids(out, orders)) == at_disable  # nothing delivered while disabled
        enabled = run_cli("enable", "orders", "--url", url)
        assert enabled.returncode == 0 and enabled.stdout.strip() == "orders: Enabled", enabled.stderr
        wait_for(lambda: len(set(ids(out, orders))) == 250, 60, "every record, after enabling again")
        assert hub.stop() == 0
    seen = Counter(ids(out, orders))
    assert set(seen) == {f"a{i}" for i in range(200)} | {f"b{i}" for i in range(50)}
    assert max(seen.values()) == 1  # the graceful disable committed what settled: nothing read twice
    assert "mapping Disabling" in hub.log() and "mapping Enabled" in hub.log()


def test_sighup_applies_a_changed_filter_and_leaves_the_other_mapping_running(tmp_path: Path, tansu: str) -> None:
    orders, audit = unique("orders"), unique("audit")
    for topic in (orders, audit):
        create_topic(tansu, topic)
    port, out = free_port(), tmp_path / "calls.jsonl"
    first = config(port, tansu, orders, audit)
    with HubProcess(tmp_path, first, {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0"}) as hub:
        hub.start(ready="admin endpoint")
        produce(tansu, audit, messages("x", 10))
        wait_for(lambda: len(ids(out, audit)) == 10, 30, "audit's first records")
        audit_before = mapping(port, "audit")
        orders_before = mapping(port, "orders")
        changed = json.loads(json.dumps(first))
        changed["mappings"][0]["filter_criteria"] = {
            "filters": [{"pattern": json.dumps({"value": {"kind": ["keep"]}})}]
        }
        changed["function_defaults"] = yaml.safe_load(hub.config_path.read_text()).get("function_defaults", {})
        hub.config_path.write_text(yaml.safe_dump(changed, sort_keys=False))
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGHUP)
        hub.wait_log("configuration reloaded")
        produce(tansu, orders, messages("k", 5, "keep") + messages("d", 5, "drop"))
        produce(tansu, audit, messages("y", 10))
        wait_for(lambda: len(ids(out, orders)) == 5 and len(ids(out, audit)) == 20, 30, "the records after reload")
        wait_for(lambda: mapping(port, "orders")["counters"]["filtered_out"] == 5, 30, "the dropped ones filtered")
        assert sorted(ids(out, orders)) == [f"k{i}" for i in range(5)]
        audit_after = mapping(port, "audit")
        assert audit_after["running_since"] == audit_before["running_since"]  # never stopped
        assert audit_after["counters"]["polled"] == 20 and audit_after["State"] == "Enabled"
        assert mapping(port, "orders")["running_since"] != orders_before["running_since"]  # replaced

        # an invalid file is refused, and the hub runs on with what it had
        hub.config_path.write_text(hub.config_path.read_text().replace("batch_size: 5", "batch_size: many", 1))
        hub.proc.send_signal(signal.SIGHUP)
        hub.wait_log("the configuration was not reloaded")
        assert "batch_size" in hub.log() and f"{hub.config_path}:" in hub.log()
        produce(tansu, audit, messages("z", 3))
        wait_for(lambda: len(ids(out, audit)) == 23, 30, "audit to go on")
        refused = run_cli("reload", "--url", f"http://127.0.0.1:{port}")
        assert refused.returncode == 1 and "batch_size" in refused.stderr, refused
        assert hub.stop() == 0
    assert "mapping Updating" in hub.log()
    assert "mapping=audit state=Updating" not in hub.log()


def test_update_changes_settings_and_refuses_what_cannot_change(tmp_path: Path, tansu: str) -> None:
    orders, audit = unique("orders"), unique("audit")
    for topic in (orders, audit):
        create_topic(tansu, topic)
    port, out = free_port(), tmp_path / "calls.jsonl"
    url = f"http://127.0.0.1:{port}"
    with HubProcess(tmp_path, config(port, tansu, orders, audit), {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready="admin endpoint")
        done = run_cli("update", "orders", "batch_size=50", "maximum_batching_window=1s", "--url", url)
        assert done.returncode == 0 and done.stdout.strip() == "orders: Enabled", done.stderr
        produce(tansu, orders, messages("a", 50))
        wait_for(lambda: len(ids(out, orders)) == 50, 30, "the records")
        assert len(read_jsonl(out)) <= 2  # batched by the new settings: 50 records in one or two invocations
        bad = run_cli("update", "orders", "batch_size=0", "--url", url)
        assert bad.returncode == 1 and "batch_size" in bad.stderr and "greater than or equal to 1" in bad.stderr
        fixed = run_cli("update", "orders", "topic=other", "--url", url)
        assert fixed.returncode == 1 and "cannot change topic" in fixed.stderr
        unknown = run_cli("disable", "nope", "--url", url)
        assert unknown.returncode == 1 and "no mapping named 'nope'" in unknown.stderr
        assert mapping(port, "orders")["State"] == "Enabled"
        assert hub.stop() == 0
    nobody = run_cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 3 and "no hub answers" in nobody.stderr


def test_changes_need_the_token_when_there_is_one(tmp_path: Path, tansu: str) -> None:
    orders, audit = unique("orders"), unique("audit")
    for topic in (orders, audit):
        create_topic(tansu, topic)
    port = free_port()
    settings = config(port, tansu, orders, audit)
    settings["admin"]["token"] = "s3cret-admin-token"
    url = f"http://127.0.0.1:{port}"
    with HubProcess(tmp_path, settings) as hub:
        hub.start(ready="admin endpoint")
        request = urllib.request.Request(f"{url}/mappings/orders/disable", data=b"{}", method="POST")
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("a change without the token was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        assert mapping(port, "orders")["State"] == "Enabled"
        assert run_cli("status", "--url", url).returncode == 0  # reading needs no token
        wrong = run_cli("disable", "orders", "--url", url, "--token", "wrong")
        assert wrong.returncode == 1 and "admin token" in wrong.stderr
        right = run_cli("disable", "orders", "--url", url, "--token", "s3cret-admin-token")
        assert right.returncode == 0, right.stderr
        assert mapping(port, "orders")["State"] == "Disabled"
        assert "s3cret-admin-token" not in json.dumps(status(port))
        assert hub.stop() == 0
    assert "s3cret-admin-token" not in hub.log()


def test_an_admin_endpoint_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("admin: {listen: '0.0.0.0:9180'}\nfunctions: {}\n")
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:1:" in result.stderr and "admin.listen: " in result.stderr and "set admin.token" in result.stderr


def test_a_reload_restarts_a_changed_mapping_s_pollers_with_the_new_file(tmp_path: Path, tansu: str) -> None:
    orders, audit = unique("orders"), unique("audit")
    create_topic(tansu, orders, partitions=2)
    create_topic(tansu, audit)
    port, out = free_port(), tmp_path / "calls.jsonl"
    first = config(port, tansu, orders, audit)
    first["mappings"][0]["provisioned_poller_config"] = {"minimum_pollers": 2}
    with HubProcess(tmp_path, first, {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0"}) as hub:
        hub.start(ready="admin endpoint")
        hub.wait_log("2 pollers (pids")
        (before,) = [p["pid"] for p in mapping(port, "orders")["pollers"] if p["poller"] == 2]
        changed = yaml.safe_load(hub.config_path.read_text())
        changed["mappings"][0]["batch_size"] = 7
        hub.config_path.write_text(yaml.safe_dump(changed, sort_keys=False))
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGHUP)
        hub.wait_log("poller 2 stopped for the new configuration")

        def restarted() -> bool:
            (poller,) = [p for p in mapping(port, "orders")["pollers"] if p["poller"] == 2]
            return bool(poller["running"] and poller["pid"] != before)

        wait_for(restarted, 30, "poller 2 to run again")
        produce(tansu, orders, [(i % 2, None, json.dumps({"id": f"a{i}"}).encode(), []) for i in range(20)])
        wait_for(lambda: len(set(ids(out, orders))) == 20, 60, "every record after the reload")
        assert hub.stop() == 0
    assert "exited unexpectedly" not in hub.log()
