"""The `mqtt` connector against a real mosquitto (tests/fixtures_mqtt.py): the source in process, then the hub as a
real process. Every test uses topics and client ids of its own."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from connectors.mqtt import MqttConfig, MqttSource
from hub.checkpoints import MemoryStore
from hub.records import Outcome, Record
from hub.source import LaneEnded, SourceContext
from tests.fixtures_mqtt import MosquittoServer, free_port, mosquitto, own_mosquitto, unique  # noqa: F401
from tests.helpers import HubProcess, read_jsonl, run_cli, running, wait_for
from tests.tls_certs import encrypted_key, make_tls_files


def make_source(
    server: MosquittoServer, topics: list[str], mapping: str | None = None, max_in_flight: int = 1, **settings: Any
) -> MqttSource:
    config = MqttConfig.model_validate({"type": "mqtt", "url": server.url, "topics": topics, **settings})
    context = SourceContext(
        mapping or unique("m"), MemoryStore(), "eu-west-1", "000000000000", max_in_flight=max_in_flight
    )
    return MqttSource(config, context)


async def publish(server: MosquittoServer, messages: Iterable[tuple[str, bytes]], qos: int = 1) -> None:
    """Publish each (topic, payload) at QoS 1: returns once the broker acknowledged every one."""
    async with aiomqtt.Client("127.0.0.1", server.port, identifier=unique("pub")) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=qos)


async def read_n(source: MqttSource, n: int, timeout: float = 10.0) -> list[Record]:
    out: list[Record] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.extend(await source.read(n - len(out), 0.5))
    return out


async def read_until(source: MqttSource, last: Any, timeout: float = 10.0) -> list[Any]:
    """Every event read up to and including the event `last` (a marker published after the others)."""
    events: list[Any] = []
    async with asyncio.timeout(timeout):
        while last not in events:
            events.extend(r.payload for r in await source.read(100, 0.5))
    return events


def settle_all(records: list[Record]) -> Outcome:
    return Outcome(succeeded=tuple(records))


# ---- the source in process -----------------------------------------------------------------------------------


async def test_json_binary_and_empty_payloads_arrive_as_an_iot_rule_sends_them(mosquitto: MosquittoServer) -> None:  # noqa: F811
    base = unique("iot")
    binary = bytes([0, 1, 200, 255, 10])
    source = make_source(mosquitto, [f"{base}/#"])
    async with running(source) as run:
        lane = await run.lane()
        assert lane is source and source.ordered is False and source.key == f"{base}/#"
        await publish(
            mosquitto,
            [
                (f"{base}/a", b'{"temperature": 21.5, "device": "s-7"}'),
                (f"{base}/b", binary),
                (f"{base}/c", b""),
                (f"{base}/d", b"[1, 2, 3]"),
                (f"{base}/e", "\u00e9t\u00e9 \u00e0 Paris".encode()),  # UTF-8 text that is not JSON
                (f"{base}/f", b'"a JSON string"'),
                (f"{base}/g", b"NaN"),  # Python's json reads it; JSON has no NaN
            ],
        )
        records = await read_n(source, 7)
        events = [source.render([r], 1) for r in records]
        await source.settle(settle_all(records))
    assert events == [
        {"temperature": 21.5, "device": "s-7"},
        {"data": base64.b64encode(binary).decode()},
        {},
        [1, 2, 3],
        {"data": base64.b64encode("\u00e9t\u00e9 \u00e0 Paris".encode()).decode()},
        "a JSON string",
        {"data": base64.b64encode(b"NaN").decode()},
    ]
    assert all(r.lane == source.key for r in records)
    with pytest.raises(ValueError, match="once per message"):
        source.render(records[:2], 1)


async def test_topic_key_adds_the_topic_as_select_topic_as_does(mosquitto: MosquittoServer) -> None:  # noqa: F811
    base = unique("iot")
    source = make_source(mosquitto, [f"{base}/+/telemetry"], topic_key="topic")
    async with running(source):
        await publish(
            mosquitto,
            [
                (f"{base}/s-1/telemetry", b'{"t": 1, "topic": "the payload\'s own"}'),
                (f"{base}/s-2/telemetry", b"\xff\xfe"),
                (f"{base}/s-3/telemetry", b"[1]"),
            ],
        )
        records = await read_n(source, 3)
        await source.settle(settle_all(records))
    assert [r.payload for r in records] == [
        {"t": 1, "topic": f"{base}/s-1/telemetry"},
        {"data": base64.b64encode(b"\xff\xfe").decode(), "topic": f"{base}/s-2/telemetry"},
        [1],  # not an object: nowhere to add it
    ]


async def test_wildcards_and_several_filters_select_exactly_their_topics(mosquitto: MosquittoServer) -> None:  # noqa: F811
    base = unique("wild")
    source = make_source(mosquitto, [f"{base}/+/temperature", f"{base}/alarms/#"])
    async with running(source):
        await publish(
            mosquitto,
            [
                (f"{base}/s-1/temperature", b'{"n": 1}'),
                (f"{base}/s-1/humidity", b'{"n": "no: + is one level, and not humidity"}'),
                (f"{base}/s-1/x/temperature", b'{"n": "no: + is exactly one level"}'),
                (f"{base}/alarms", b'{"n": 2}'),  # `#` also matches the parent level
                (f"{base}/alarms/fire/floor-3", b'{"n": 3}'),
                (f"{base}/other", b'{"n": "no"}'),
                (f"{base}/s-2/temperature", b'{"n": "last"}'),
            ],
        )
        events = await read_until(source, {"n": "last"})
    assert events == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": "last"}]


@pytest.mark.parametrize("order", ["received", "settled"])
async def test_a_message_without_puback_comes_again_with_the_session_and_a_settled_one_does_not(
    mosquitto: MosquittoServer,  # noqa: F811
    order: str,
) -> None:
    """The persistent session, and the manual PUBACK that aiomqtt does not expose (connectors/mqtt/acks.py): were
    a PUBACK sent on arrival, the unsettled message would not come again. In the specification's order
    (`received`), the PUBACK of a settled message waits for the one before it, so both come again."""
    base = unique("session")
    mapping = unique("m")
    source = make_source(mosquitto, [f"{base}/#"], mapping=mapping, puback_order=order)
    async with running(source):
        await publish(mosquitto, [(f"{base}/x", b'{"n": 1}'), (f"{base}/x", b'{"n": 2}')])
        first, second = await read_n(source, 2)
        await source.settle(Outcome(succeeded=(second,)))  # n=1 is still running when the hub stops
    assert (first.payload, second.payload) == ({"n": 1}, {"n": 2})
    # published while no hub is connected: the session queues it
    await publish(mosquitto, [(f"{base}/x", b'{"n": 3}'), (f"{base}/x", b'{"n": "last"}')])
    again = make_source(mosquitto, [f"{base}/#"], mapping=mapping, puback_order=order)
    assert again.client_id == source.client_id == f"eventhub-{mapping}"
    async with running(again):
        events = await read_until(again, {"n": "last"})
        await again.settle(settle_all(await again.read(100, 0.1)))
    expected = [{"n": 1}, {"n": 3}, {"n": "last"}] + ([{"n": 2}] if order == "received" else [])
    assert sorted(map(json.dumps, events)) == sorted(map(json.dumps, expected))


async def test_a_failed_message_reopens_the_connection_for_its_redelivery(mosquitto: MosquittoServer) -> None:  # noqa: F811
    base = unique("failed")
    source = make_source(mosquitto, [f"{base}/#"])
    async with running(source):
        await publish(mosquitto, [(f"{base}/x", b'{"n": 1}')])
        (record,) = await read_n(source, 1)
        await source.settle(Outcome(failed=(record,)))
        with pytest.raises(ConnectionError, match="reconnecting for its redelivery"):
            await source.read(10, 1.0)
        lanes = source.lanes()
        assert await anext(lanes) is source
        with pytest.raises(ConnectionError, match="redelivery"):
            await anext(lanes)
        await source.close()
        await source.open()
        (again,) = await read_n(source, 1)
        assert again.payload == {"n": 1} and again.position != record.position
        await source.settle(Outcome(succeeded=(record,)))  # the old connection's: ignored, not an error
        await source.settle(Outcome(succeeded=(again,)))
    await source.close()
    with pytest.raises(LaneEnded):
        await source.read(1, 0.1)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_retained_messages_are_not_replayed_as_events_but_live_retained_publishes_are(
    mosquitto: MosquittoServer,  # noqa: F811
    protocol: str,
) -> None:
    """An IoT rule sees publishes: a retained message the broker replays to a new subscription is no event (MQTT 5:
    Retain Handling 2; 3.1.1: acked unseen), while a publish with the retain flag made while subscribed is one."""
    base = unique("retained")
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=unique("pub")) as client:
        await client.publish(f"{base}/state", b'{"n": "old retained"}', qos=1, retain=True)
        source = make_source(mosquitto, [f"{base}/#"], protocol=protocol)
        async with running(source):
            await client.publish(f"{base}/state", b'{"n": "live retained"}', qos=1, retain=True)
            await client.publish(f"{base}/state", b'{"n": "last"}', qos=1)
            events = await read_until(source, {"n": "last"})
        await client.publish(f"{base}/state", b"", qos=1, retain=True)  # clears the retained message
    assert events == [{"n": "live retained"}, {"n": "last"}]


async def test_mqtt_3_1_1_keeps_its_session_too(mosquitto: MosquittoServer) -> None:  # noqa: F811
    base = unique("v311")
    mapping = unique("m")
    source = make_source(mosquitto, [f"{base}/#"], mapping=mapping, protocol="3.1.1")
    async with running(source):
        await publish(mosquitto, [(f"{base}/x", b'{"n": 1}')])
        records = await read_n(source, 1)
        await source.settle(settle_all(records))
    await publish(mosquitto, [(f"{base}/x", b'{"n": 2}'), (f"{base}/x", b'{"n": "last"}')])
    async with running(make_source(mosquitto, [f"{base}/#"], mapping=mapping, protocol="3.1.1")) as run:
        events = await read_until(run.source, {"n": "last"})
    assert events == [{"n": 2}, {"n": "last"}]


async def test_receive_maximum_bounds_the_messages_without_puback(mosquitto: MosquittoServer) -> None:  # noqa: F811
    base = unique("window")
    source = make_source(mosquitto, [f"{base}/#"], receive_maximum=5)
    async with running(source):
        await publish(mosquitto, [(f"{base}/x", json.dumps({"n": i}).encode()) for i in range(12)])
        first = await read_n(source, 5)
        assert await source.read(100, 0.5) == []  # the broker waits for PUBACKs
        await source.settle(settle_all(first[:2]))
        more = await read_n(source, 2)
        await source.settle(settle_all(first[2:] + more))
        rest = await read_n(source, 5)
        await source.settle(settle_all(rest))
    assert [r.payload["n"] for r in first + more + rest] == list(range(12))


async def test_a_second_client_with_the_same_id_takes_the_session_over(mosquitto: MosquittoServer) -> None:  # noqa: F811
    base = unique("takeover")
    first = make_source(mosquitto, [f"{base}/#"], client_id=unique("same"))
    second = make_source(mosquitto, [f"{base}/#"], client_id=first.client_id)
    async with running(first):
        lanes = first.lanes()
        assert await anext(lanes) is first
        async with running(second):
            # mosquitto closes the first connection without saying why: the error names the client id
            with pytest.raises(ConnectionError, match=f"the connection of client id '{first.client_id}' was lost"):
                await asyncio.wait_for(anext(lanes), 10)


async def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    """A broker with a plain listener (for the test's publisher) and a TLS one that asks for a client certificate."""
    files = make_tls_files(tmp_path / "tls")
    tls_port = free_port()
    server = MosquittoServer(
        tmp_path,
        f"listener {tls_port} 127.0.0.1",
        f"cafile {files.ca}",
        f"certfile {files.server_cert}",
        f"keyfile {files.server_key}",
        "require_certificate true",
    ).start()
    try:
        base = unique("tls")
        url = f"mqtts://127.0.0.1:{tls_port}"
        locked = encrypted_key(files.client_key, "s3cret", tmp_path / "locked.key")
        certificate = {"ssl_cafile": str(files.ca), "ssl_certfile": str(files.client_cert)}
        source = make_source(
            server, [f"{base}/#"], url=url, ssl_keyfile=str(locked), ssl_password="s3cret", **certificate
        )
        async with running(source):
            await publish(server, [(f"{base}/x", b'{"over": "tls"}')])
            (record,) = await read_n(source, 1)
            await source.settle(settle_all([record]))
        assert record.payload == {"over": "tls"} and source.where == url
        anonymous = make_source(server, [f"{base}/#"], url=url, ssl_cafile=str(files.ca), connect_timeout=2)
        with pytest.raises(ConnectionError, match=f"connecting to {url} as '{anonymous.client_id}' failed"):
            await anonymous.open()  # the broker wants a certificate
        await anonymous.close()
        no_password = make_source(server, [f"{base}/#"], url=url, ssl_keyfile=str(locked), **certificate)
        with pytest.raises(ValueError, match="is encrypted: set ssl_password"):
            await no_password.open()
        await no_password.close()
    finally:
        server.stop()


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
    mosquitto: MosquittoServer,  # noqa: F811
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
    mosquitto: MosquittoServer,  # noqa: F811
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
    mosquitto: MosquittoServer,  # noqa: F811
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


def test_sigkill_mid_stream_then_restart_loses_nothing(tmp_path: Path, mosquitto: MosquittoServer) -> None:  # noqa: F811
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


def test_a_broker_restart_loses_nothing(tmp_path: Path, own_mosquitto: MosquittoServer) -> None:  # noqa: F811
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


def test_two_hubs_with_a_shared_group_split_the_messages(tmp_path: Path, mosquitto: MosquittoServer) -> None:  # noqa: F811
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


def test_pollers_of_a_shared_group_split_the_messages(tmp_path: Path, mosquitto: MosquittoServer) -> None:  # noqa: F811
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
