"""The `mqtt` connector in the hub as a real process, against a real mosquitto (tests/fixtures_mqtt.py): the events,
the persistent session, retries and the destination, a SIGKILL mid-stream, a broker restart, shared subscriptions.
Every test uses topics and client ids of its own."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.fixtures_mqtt import MosquittoServer, unique
from tests.helpers import HubProcess, read_jsonl, run_cli, wait_for
from tests.integration.test_mqtt import publish

# ---- the hub as a real process ---------------------------------------------------------------------------------


def hub_config(
    url: str,
    topics: list[str],
    handler: str = "functions.recorder.record",
    name: str = "telemetry",
    mapping: dict[str, Any] | None = None,
    **source: Any,
) -> dict[str, Any]:
    return {
        "checkpoints": "memory://",  # the broker's session holds the position: nothing is checkpointed here
        "shutdown_grace": "5s",
        "functions": {"f": {"handler": handler, "timeout": "30s"}},
        "mappings": [
            {
                "name": name,
                "function": "f",
                "source": {"type": "mqtt", "url": url, "topics": topics, **source},
                **(mapping or {}),
            }
        ],
    }


def start(hub: HubProcess) -> HubProcess:
    """Start the hub and wait until its mapping is subscribed (its session exists from then on)."""
    return hub.start(ready="subscribed to")


def numbers(out: Path) -> list[Any]:
    """The `n` of every event the recorder wrote, in the order the invocations wrote them."""
    return [line["event"]["n"] for line in read_jsonl(out)]


def publish_numbers(server: MosquittoServer, topic: str, values: Iterable[Any]) -> None:
    asyncio.run(publish(server, [(topic, json.dumps({"n": n}).encode()) for n in values]))


def test_hub_events_prints_the_sample() -> None:
    result = run_cli("events", "mqtt")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "device": "sensor-7",
        "temperature": 21.5,
        "humidity": 40,
        "battery": {"volts": 3.7, "low": False},
    }
    assert "mqtt" in run_cli("events").stdout


def test_the_function_gets_json_and_binary_payloads_as_an_iot_rule_sends_them(
    tmp_path: Path,
    mosquitto: MosquittoServer,
) -> None:
    base = unique("hub-iot")
    out = tmp_path / "out.jsonl"
    binary = bytes(range(250, 256)) + b"\x00raw"
    filters = {"filter_criteria": [{"test": [{"exists": False}]}]}  # a message marked as a test is no event
    config = hub_config(mosquitto.url, [f"{base}/+/telemetry"], mapping=filters, topic_key="source_topic")
    with HubProcess(tmp_path, config, env={"RECORDER_OUT": str(out)}) as hub:
        start(hub)
        published = [(f"{base}/s-0/telemetry", b'{"test": true}')]
        published += [(f"{base}/s-1/telemetry", b'{"t": 20.5}'), (f"{base}/s-2/telemetry", binary)]
        asyncio.run(publish(mosquitto, published))
        wait_for(lambda: len(read_jsonl(out)) == 2, 20, "two invocations")
        assert hub.stop() == 0
        assert "polled=3 filtered_out=1 invoked=2" in hub.log()
        start(hub)  # the filtered message was acked too: the session sends nothing again
        asyncio.run(publish(mosquitto, [(f"{base}/s-3/telemetry", b'{"t": "last"}')]))
        wait_for(lambda: len(read_jsonl(out)) == 3, 20, "the last message")
        assert hub.stop() == 0
        assert "polled=1 filtered_out=0 invoked=1" in hub.log()
    events = sorted((line["event"] for line in read_jsonl(out)[:2]), key=json.dumps)
    assert events == sorted(
        [
            {"t": 20.5, "source_topic": f"{base}/s-1/telemetry"},
            {"data": base64.b64encode(binary).decode(), "source_topic": f"{base}/s-2/telemetry"},
        ],
        key=json.dumps,
    )
    assert len({line["request_id"] for line in read_jsonl(out)}) == 3  # one invocation per message


def test_messages_published_while_the_hub_is_down_arrive_after_it_starts(
    tmp_path: Path,
    mosquitto: MosquittoServer,
) -> None:
    base = unique("down")
    out = tmp_path / "out.jsonl"
    with HubProcess(tmp_path, hub_config(mosquitto.url, [f"{base}/#"]), env={"RECORDER_OUT": str(out)}) as hub:
        start(hub)  # the first start makes the session
        assert hub.stop() == 0
        publish_numbers(mosquitto, f"{base}/x", range(20))
        start(hub)
        wait_for(lambda: sorted(numbers(out)) == list(range(20)), 20, "the 20 messages published while down")
        assert hub.stop() == 0


def test_a_failing_message_is_retried_given_up_to_the_destination_and_only_then_acked(
    tmp_path: Path,
    mosquitto: MosquittoServer,
) -> None:
    base = unique("failing")
    out = tmp_path / "out.jsonl"
    failures = tmp_path / "failures.jsonl"
    env = {"RECORDER_OUT": str(out)}
    retries: dict[str, Any] = {
        "maximum_retry_attempts": 1,
        "destination_config": {"on_failure": {"type": "file", "path": str(failures)}},
    }
    failing = hub_config(
        mosquitto.url, [f"{base}/#"], "functions.recorder.fail", mapping={**retries, "retry_delay": "20s"}
    )
    with HubProcess(tmp_path, failing, env=env) as hub:
        start(hub)
        publish_numbers(mosquitto, f"{base}/x", [1])
        wait_for(lambda: numbers(out) == [1], 20, "the first attempt")
        assert hub.stop() == 0  # waiting for its retry: no outcome yet, so no PUBACK
        assert "source failed" not in hub.log() and "mapping totals" in hub.log()
        start(hub)
        wait_for(lambda: numbers(out) == [1, 1], 20, "the first attempt again")
        hub.kill()  # the same, by a crash
    assert read_jsonl(failures) == []
    quick = hub_config(
        mosquitto.url, [f"{base}/#"], "functions.recorder.fail", mapping={**retries, "retry_delay": "100ms"}
    )
    with HubProcess(tmp_path, quick, env=env) as hub:
        start(hub)
        wait_for(lambda: len(read_jsonl(failures)) == 1, 20, "the failure record")
        assert numbers(out) == [1, 1, 1, 1]  # once before the stop and the kill each; then a first try and a retry
        assert hub.stop() == 0
    (failure,) = read_jsonl(failures)
    assert failure["requestPayload"] == {"n": 1}
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 2
    assert failure["responsePayload"]["errorType"] == "ValueError"
    # acked once the destination had it: the session does not send it again before a message published later
    publish_numbers(mosquitto, f"{base}/x", ["marker"])
    with HubProcess(tmp_path, hub_config(mosquitto.url, [f"{base}/#"]), env=env) as hub:
        start(hub)
        wait_for(lambda: "marker" in numbers(out), 20, "the marker")
        assert hub.stop() == 0
    assert numbers(out) == [1, 1, 1, 1, "marker"]


def test_sigkill_mid_stream_then_restart_loses_nothing(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    base = unique("chaos")
    out = tmp_path / "out.jsonl"
    total, window = 150, 20
    config = hub_config(
        mosquitto.url,
        [f"{base}/#"],
        "functions.recorder.slow",
        mapping={"max_concurrency": 5},
        receive_maximum=window,
    )
    env = {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.02"}
    with HubProcess(tmp_path, config, env=env) as hub:
        start(hub)
        publish_numbers(mosquitto, f"{base}/x", range(total))
        wait_for(lambda: len(numbers(out)) >= 30, 30, "some invocations before the kill")
        hub.kill()
        assert len(set(numbers(out))) < total  # killed mid-stream
        start(hub)
        wait_for(lambda: set(numbers(out)) == set(range(total)), 60, "every message after the restart")
        assert hub.stop() == 0
    seen = numbers(out)
    assert len(seen) - total <= window  # duplicates: at most the messages without PUBACK at the kill


def test_a_broker_restart_loses_nothing(tmp_path: Path, own_mosquitto: MosquittoServer) -> None:
    base = unique("restart")
    out = tmp_path / "out.jsonl"
    config = hub_config(own_mosquitto.url, [f"{base}/#"], "functions.recorder.slow", receive_maximum=20)
    with HubProcess(tmp_path, config, env={"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.02"}) as hub:
        start(hub)
        publish_numbers(own_mosquitto, f"{base}/x", range(100))
        wait_for(lambda: len(numbers(out)) >= 20, 30, "some invocations before the broker dies")
        own_mosquitto.kill()
        hub.wait_log("the connection of client id 'eventhub-telemetry' was lost")
        own_mosquitto.start(same_port=True)
        publish_numbers(own_mosquitto, f"{base}/x", range(100, 200))
        wait_for(lambda: set(numbers(out)) == set(range(200)), 60, "every message, before and after the restart")
        hub.wait_log("source reconnected")
        assert hub.proc is not None and hub.proc.poll() is None
        assert hub.stop() == 0


def test_two_hubs_with_a_shared_group_split_the_messages(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    base = unique("shared")
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    hubs = []
    for i, out in enumerate(outs):
        folder = tmp_path / f"hub-{i}"
        folder.mkdir()
        config = hub_config(mosquitto.url, [f"{base}/#"], shared_group="workers", client_id=unique(f"hub{i}"))
        hubs.append(start(HubProcess(folder, config, env={"RECORDER_OUT": str(out)})))
    try:
        publish_numbers(mosquitto, f"{base}/x", range(60))
        wait_for(lambda: sorted(numbers(outs[0]) + numbers(outs[1])) == list(range(60)), 30, "all 60 messages")
    finally:
        for hub in hubs:
            hub.stop()
    first, second = set(numbers(outs[0])), set(numbers(outs[1]))
    assert first and second and not first & second  # each hub got some, none got one twice


def test_pollers_of_a_shared_group_split_the_messages(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    base = unique("pollers")
    out = tmp_path / "out.jsonl"
    config = hub_config(
        mosquitto.url,
        [f"{base}/#"],
        mapping={"provisioned_poller_config": {"minimum_pollers": 2, "maximum_pollers": 2}},
        shared_group="pollers",
    )
    with HubProcess(tmp_path, config, env={"RECORDER_OUT": str(out)}) as hub:
        start(hub)
        hub.wait_log(f"as eventhub-telemetry-{socket.gethostname()}-p2")  # the second poller, with its own client id
        publish_numbers(mosquitto, f"{base}/x", range(40))
        wait_for(lambda: sorted(numbers(out)) == list(range(40)), 30, "all 40 messages")
        assert hub.stop() == 0
    by_process = {line["ppid"] for line in read_jsonl(out)}  # each poller's execution environments
    assert len(by_process) == 2 and os.getpid() not in by_process  # the two pollers' execution environments
