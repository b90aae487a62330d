"""The `mqtt` source in process against a real mosquitto (tests/fixtures_mqtt.py); the hub as a real process is in
test_mqtt_hub.py. Every test uses topics and client ids of its own."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from connectors.mqtt import MqttConfig, MqttSource
from hub.checkpoints import MemoryStore
from hub.records import Outcome, Record
from hub.source import LaneEnded, SourceContext
from tests.fixtures_mqtt import MosquittoServer, free_port, unique
from tests.helpers import running
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


async def test_json_binary_and_empty_payloads_arrive_as_an_iot_rule_sends_them(mosquitto: MosquittoServer) -> None:
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


async def test_topic_key_adds_the_topic_as_select_topic_as_does(mosquitto: MosquittoServer) -> None:
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


async def test_wildcards_and_several_filters_select_exactly_their_topics(mosquitto: MosquittoServer) -> None:
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
    mosquitto: MosquittoServer,
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


async def test_a_failed_message_reopens_the_connection_for_its_redelivery(mosquitto: MosquittoServer) -> None:
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
    mosquitto: MosquittoServer,
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


async def test_mqtt_3_1_1_keeps_its_session_too(mosquitto: MosquittoServer) -> None:
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


async def test_receive_maximum_bounds_the_messages_without_puback(mosquitto: MosquittoServer) -> None:
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


async def test_a_second_client_with_the_same_id_takes_the_session_over(mosquitto: MosquittoServer) -> None:
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
