"""The `mqtt` connector's pure parts: its settings, the client id, the PUBACK window, the event, the registry entry,
and the one place that reaches paho-mqtt through aiomqtt (which a release of either must not silently break)."""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from pydantic import ValidationError

from connectors.mqtt import CONNECTOR, AckWindow, LibraryChanged, MqttConfig, check_filter, iot_event, manual_acks
from hub import registry
from hub.config import ConfigError, load_config


def config(**settings: Any) -> MqttConfig:
    return MqttConfig.model_validate({"type": "mqtt", "topics": "sensors/#", **settings})


# ---- settings ------------------------------------------------------------------------------------------------


def test_defaults_and_derived_values() -> None:
    c = config()
    assert c.topics == ["sensors/#"]  # one filter may be a string
    assert (c.host, c.port, c.uses_tls, c.protocol, c.puback_order) == ("localhost", 1883, False, "5", "received")
    assert c.session_expiry == 86400 and c.topic_key is None and c.shared_group is None
    secure = config(url="mqtts://broker.example:8884", username="hub", password="pw", protocol="3.1.1")
    assert (secure.host, secure.port, secure.uses_tls) == ("broker.example", 8884, True)
    assert secure.login() == ("hub", "pw")
    assert config(url="mqtts://broker.example").port == 8883
    assert config(url="mqtt://u%40x:p%2Fw@h:1").login() == ("u@x", "p/w")
    assert config(protocol=5).protocol == "5"  # YAML's 5 is a number
    assert config(protocol="3.1.1", topics=["a/+", "b/#"]).subscriptions() == ["a/+", "b/#"]
    assert config(shared_group="workers", topics=["a/+", "b"]).subscriptions() == [
        "$share/workers/a/+",
        "$share/workers/b",
    ]


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"topics": []}, "at least 1 item"),
        ({"topics": ["a/#/b"]}, "`#` stands alone, as the last level"),
        ({"topics": ["a/b#"]}, "`#` stands alone"),
        ({"topics": ["a/b+/c"]}, "`+` stands alone in its level"),
        ({"topics": [""]}, "not empty"),
        ({"topics": ["a", "a"]}, "listed twice"),
        ({"topics": ["$share/g/a"]}, "write the group as `shared_group`"),
        ({"url": "http://h:1883"}, "use mqtt://host:port or mqtts://host:port"),
        ({"url": "mqtt://h:1883/path"}, "no path or query"),
        ({"url": "mqtt://u:pw@h", "password": "pw"}, "the password is given twice"),
        ({"url": "mqtt://u@h", "username": "v"}, "the user is given twice"),
        ({"shared_group": "a/b"}, "no `/`, `+` or `#`"),
        ({"shared_group": "g", "protocol": "3.1.1"}, "shared_group needs protocol 5"),
        ({"receive_maximum": 10, "protocol": "3.1.1"}, "receive_maximum is MQTT 5's"),
        ({"ssl_cafile": "ca.pem"}, "only used with TLS"),
        ({"tls": True, "ssl_keyfile": "k.pem"}, "ssl_keyfile and ssl_password go with ssl_certfile"),
        ({"protocol": "4"}, "'5' or '3.1.1'"),
        ({"puback_order": "never"}, "'received' or 'settled'"),
        ({"qos": 0}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_say_why(settings: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**settings)
    assert needle in str(caught.value)


def test_valid_filters() -> None:
    for topic in ("#", "+", "a/+/b", "a/#", "+/+/#", "/a", "a//b", "$SYS/#", "sensors/\u00e9t\u00e9"):
        check_filter(topic)


def test_the_client_id_is_stable_and_apart_per_poller_and_host() -> None:
    assert config().session_id("orders") == "eventhub-orders"
    assert config().session_id("orders", poller=3) == "eventhub-orders-p3"
    assert config(client_id="mine").session_id("orders", poller=2) == "mine-p2"
    shared = config(shared_group="g").session_id("orders")
    assert shared == f"eventhub-orders-{socket.gethostname()}" or shared.startswith("eventhub-orders-")
    odd = config().session_id("my orders/été" + "x" * 80)
    assert odd == config().session_id("my orders/été" + "x" * 80)  # stable
    assert odd != config().session_id("my orders/ete" + "x" * 80)  # a checksum keeps names apart
    assert len(odd) <= 64 and all(c.isascii() and (c.isalnum() or c in "_.-") for c in odd)


# ---- the registry and the mapping settings of the async family ------------------------------------------------


def test_registered_as_an_asynchronous_source_that_shares_work_with_a_shared_group() -> None:
    spec = registry.get("mqtt")
    assert spec is CONNECTOR and spec.family == "async" and spec.extra == "mqtt" and spec.requires == ("aiomqtt",)
    assert callable(spec.shares_work)
    assert spec.shares_work(config(shared_group="g")) and not spec.shares_work(config())
    assert spec.sample_event() == {
        "device": "sensor-7",
        "temperature": 21.5,
        "humidity": 40,
        "battery": {"volts": 3.7, "low": False},
    }


def write(tmp: Path, source: str, extra: str = "") -> Path:
    path = tmp / "hub.yaml"
    path.write_text(
        "functions:\n  f: {handler: functions.recorder.record}\n"
        f"mappings:\n  - function: f\n    source: {source}\n{extra}"
    )
    return path


def test_mapping_settings_are_those_of_an_asynchronous_invocation(tmp_path: Path) -> None:
    (mapping,) = load_config(
        write(tmp_path, "{type: mqtt, topics: [a/#]}", "    maximum_retry_attempts: 1\n    maximum_event_age: 60s\n")
    ).mappings
    assert mapping.setting("batch_size") == 1 and mapping.setting("max_concurrency") == 10
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "{type: mqtt, topics: [a/#]}", "    batch_size: 10\n"))
    assert "batch_size: does not apply to mqtt sources (each event is its own asynchronous invocation" in str(
        caught.value
    )


def test_pollers_need_a_shared_group(tmp_path: Path) -> None:
    pollers = "    provisioned_poller_config: {minimum_pollers: 2}\n"
    (mapping,) = load_config(write(tmp_path, "{type: mqtt, topics: [a/#], shared_group: g}", pollers)).mappings
    assert mapping.pollers == 2 and mapping.shares_work
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "{type: mqtt, topics: [a/#]}", pollers))
    assert "provisioned_poller_config: does not apply to mqtt sources" in str(caught.value)
    assert "mqtt with shared_group" in str(caught.value)


# ---- the event -------------------------------------------------------------------------------------------------


def test_the_event_is_what_select_star_sends() -> None:
    assert iot_event(b'{"a": 1}', "t/1", None) == {"a": 1}
    assert iot_event(b'{"a": 1}', "t/1", "topic") == {"a": 1, "topic": "t/1"}
    assert iot_event(b"", "t/1", None) == {} and iot_event(b"", "t/1", "at") == {"at": "t/1"}
    assert iot_event(b"\x00\xff", "t", None) == {"data": base64.b64encode(b"\x00\xff").decode()}
    assert iot_event(b"12.5", "t", "topic") == 12.5
    assert iot_event(b"Infinity", "t", None) == {"data": base64.b64encode(b"Infinity").decode()}
    assert iot_event('{"\u00e9": "\u00e0"}'.encode("utf-16"), "t", None) == {
        "data": base64.b64encode('{"\u00e9": "\u00e0"}'.encode("utf-16")).decode()  # JSON is UTF-8 for IoT
    }


# ---- PUBACKs ---------------------------------------------------------------------------------------------------


def test_the_window_acks_in_arrival_order() -> None:
    sent: list[tuple[int, int]] = []
    window = AckWindow(lambda mid, qos: sent.append((mid, qos)), ordered=True)
    seqs = [window.received(mid, qos) for mid, qos in [(11, 1), (12, 0), (13, 1), (14, 1)]]
    window.settle(seqs[2])
    window.settle(seqs[1])
    assert sent == [] and len(window) == 4  # the first holds the others back
    window.settle(seqs[0])
    assert sent == [(11, 1), (13, 1)] and len(window) == 1  # QoS 0 has no PUBACK
    window.settle(seqs[0])  # settled already: nothing more
    window.settle(999)  # not in the window
    window.settle(seqs[3])
    assert sent == [(11, 1), (13, 1), (14, 1)] and len(window) == 0


def test_the_window_acks_at_once_in_settled_order() -> None:
    sent: list[tuple[int, int]] = []
    window = AckWindow(lambda mid, qos: sent.append((mid, qos)), ordered=False)
    first, second = window.received(1, 1), window.received(2, 1)
    window.settle(second)
    assert sent == [(2, 1)] and len(window) == 1
    window.settle(first)
    window.settle(first)
    assert sent == [(2, 1), (1, 1)] and len(window) == 0


async def test_manual_acks_reaches_paho_through_aiomqtt() -> None:
    """aiomqtt wraps paho-mqtt's Client as `_client` and exposes no manual ack: if a release changes that, this
    fails (and the connector refuses to open rather than ack every message on arrival)."""
    client = aiomqtt.Client("127.0.0.1", 1, identifier="unit")
    inner = client._client
    assert isinstance(inner, paho.Client)
    assert inner._manual_ack is False  # paho acks on arrival by default: what the connector must turn off
    send = manual_acks(client)
    assert inner._manual_ack is True and callable(send)


async def test_manual_acks_refuses_a_client_it_does_not_know() -> None:
    class Wrapped:
        _client = object()

    with pytest.raises(LibraryChanged, match="no longer wraps a paho-mqtt Client"):
        manual_acks(Wrapped())


def test_the_example_telemetry_handler_reads_both_forms_of_the_event() -> None:
    from functions import telemetry

    assert telemetry.handler({"temperature": 31.5, "topic": "sensors/s-9/telemetry"}, None) == {
        "device": "s-9",
        "temperature": 31.5,
    }
    binary = iot_event(b"\x01\x02\x03", "sensors/s-2/telemetry", "topic")
    assert telemetry.handler(binary, None) == {"device": "s-2", "bytes": 3}
    assert telemetry.handler([1, 2], None) == {"ignored": "list"}


def test_its_credentials_are_secrets() -> None:
    from hub import redact

    assert redact.secrets_of(config(url="mqtts://hub:url-pw@h", ssl_certfile="c.pem", ssl_password="key-pw")) >= {
        "url-pw",
        "key-pw",
    }
    assert "field-pw" in redact.secrets_of(config(username="hub", password="field-pw"))
    assert "field-pw" not in repr(config(username="hub", password="field-pw"))
