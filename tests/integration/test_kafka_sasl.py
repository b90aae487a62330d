"""The `kafka` connector against a broker that demands SASL: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.

The broker is tansu behind our own SASL gate (tests/sasl_gate.py, see tests.fixtures_kafka.SaslBroker): no broker
that authenticates clients can be installed here, so the gate plays the broker side of Kafka's SASL handshake and
pipes authenticated connections to tansu. The source logs in with each mechanism and reads; a client without SASL is
refused; a wrong password makes `open` raise an error that names the user and the mechanism (never the password),
and the hub retries until the broker accepts the login, then delivers everything.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from connectors.kafka.config import KafkaAuthenticationError
from tests.fixtures_kafka import SASL_MECHANISMS, SaslBroker, free_port, numbered, produce, produce_async, unique
from tests.helpers import HubProcess, read_n, wait_for
from tests.integration.test_kafka import Member, handled, hub_config, ids, make_source, offsets, within

# ---- the source, in-process ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
async def test_source_authenticates_and_reads(sasl_kafka: SaslBroker, mechanism: str) -> None:
    topic = unique("sasl")
    await sasl_kafka.create_topic(topic, 2)
    await produce_async(sasl_kafka.address, topic, numbered(2, 6), **sasl_kafka.client(mechanism))
    before = len(sasl_kafka.gate.successes)
    source = make_source(sasl_kafka.address, topic, **sasl_kafka.source_options(mechanism))
    async with Member(source) as member:
        lanes = await member.wait_lanes(2)
        for p in range(2):
            assert offsets(await read_n(lanes[f"{topic}-{p}"], 3)) == [0, 1, 2]
    assert (mechanism, "hub-reader") in sasl_kafka.gate.successes[before:]


async def test_the_broker_refuses_a_client_without_sasl(sasl_kafka: SaslBroker) -> None:
    source = make_source(sasl_kafka.address, unique("t"))  # PLAINTEXT: the gate closes the connection
    with pytest.raises(KafkaConnectionError):
        await within(source.open(), 30)
    await source.close()


@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
async def test_a_wrong_password_fails_open_and_a_later_open_succeeds(
    sasl_kafka: SaslBroker,
    mechanism: str,
) -> None:
    """What the mapping does on a wrong password: open raises, close is safe, and it opens again later (here once
    the broker has been given the password the hub uses, as when a rotated secret reaches the broker late)."""
    topic, user, password = unique("sasl"), unique("late-user"), "rotated-later"
    await sasl_kafka.create_topic(topic)
    await produce_async(sasl_kafka.address, topic, [(0, b"k", b'{"n": 1}')], **sasl_kafka.client())
    failures = len(sasl_kafka.gate.failures)
    source = make_source(sasl_kafka.address, topic, **sasl_kafka.source_options(mechanism, user, password))
    with pytest.raises(KafkaAuthenticationError):
        await within(source.open(), 30)
    await source.close()
    refused = sasl_kafka.gate.failures[failures:]
    assert refused and {m for m, _ in refused} == {mechanism}
    sasl_kafka.gate.set_user(user, password)
    async with Member(source) as member:  # the same source object, reopened, as the mapping does
        lanes = await member.wait_lanes(1)
        assert offsets(await read_n(lanes[f"{topic}-0"], 1)) == [0]


@pytest.mark.parametrize(
    ("mechanism", "user", "broker_says"),
    [
        ("PLAIN", "hub-reader", "Invalid username or password"),
        ("SCRAM-SHA-256", "hub-reader", "invalid credentials with SASL mechanism SCRAM-SHA-256"),
        ("SCRAM-SHA-512", "nobody-by-this-name", "invalid credentials with SASL mechanism SCRAM-SHA-512"),
    ],
)
async def test_a_refused_login_names_user_mechanism_and_what_to_check(
    sasl_kafka: SaslBroker,
    mechanism: str,
    user: str,
    broker_says: str,
) -> None:
    password = "wrong-Pa55-" + unique("x")
    source = make_source(sasl_kafka.address, unique("t"), **sasl_kafka.source_options(mechanism, user, password))
    with pytest.raises(KafkaAuthenticationError) as caught:
        await within(source.open(), 30)
    await source.close()
    message = str(caught.value)
    assert message.startswith(f"SASL authentication failed for user {user!r} with mechanism {mechanism} at ")
    assert sasl_kafka.address in message
    assert "[Error 58] SaslAuthenticationFailed" in message and broker_says in message
    assert "sasl_username, sasl_password" in message and "sasl_mechanism" in message
    assert "security_protocol (SASL_PLAINTEXT" in message
    assert password not in message and password not in repr(caught.value.__cause__)


async def test_a_mechanism_the_broker_does_not_offer_is_named(sasl_kafka: SaslBroker) -> None:
    offered = sasl_kafka.gate.mechanisms
    sasl_kafka.gate.mechanisms = ("SCRAM-SHA-512",)
    try:
        source = make_source(sasl_kafka.address, unique("t"), **sasl_kafka.source_options("PLAIN"))
        with pytest.raises(KafkaAuthenticationError) as caught:
            await within(source.open(), 30)
        await source.close()
    finally:
        sasl_kafka.gate.mechanisms = offered
    assert "with mechanism PLAIN" in str(caught.value) and "UnsupportedSaslMechanism" in str(caught.value)


async def test_an_unreachable_broker_is_not_called_an_authentication_failure() -> None:
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    options = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"}
    source = make_source(nobody, unique("t"), **options, sasl_password="p")
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await within(source.open(), 30)
    await source.close()


# ---- the hub, end to end --------------------------------------------------------------------------------------------


def test_hub_with_a_wrong_password_says_why_keeps_retrying_then_delivers(
    tmp_path: Path,
    sasl_kafka: SaslBroker,
) -> None:
    topic, group, out = unique("t"), unique("g"), tmp_path / "calls.jsonl"
    user, password = unique("hub"), "not-yet-known-" + unique("pw")
    asyncio.run(sasl_kafka.create_topic(topic, 2))
    produce(sasl_kafka.address, topic, numbered(2, 10), **sasl_kafka.client())
    config = hub_config(
        tmp_path, sasl_kafka.address, topic, group, source=sasl_kafka.source_options("SCRAM-SHA-256", user, password)
    )
    refused = len(sasl_kafka.gate.failures)
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready=None)
        hub.wait_log(
            f"source failed: KafkaAuthenticationError: SASL authentication failed for user {user!r} "
            "with mechanism SCRAM-SHA-256"
        )
        # each failed open is refused twice (aiokafka's bootstrap, then the login that finds out why): more is a retry
        wait_for(lambda: len(sasl_kafka.gate.failures) >= refused + 3, 20, "a second open refused (it retries)")
        assert hub.proc is not None and hub.proc.poll() is None, "the hub must not stop on a wrong password"
        sasl_kafka.gate.set_user(user, password)
        hub.wait_log("partitions assigned", timeout=40)
        wait_for(lambda: len(ids(out)) == 10, 30, "10 records handled")
        assert len(handled(out)) == 10
        assert hub.stop() == 0
        assert password not in hub.log(), "the password must never be logged"


async def test_a_destination_with_a_wrong_password_says_so_and_one_with_the_right_one_sends(
    sasl_kafka: SaslBroker,
) -> None:
    from connectors.kafka.config import KafkaDestinationConfig
    from connectors.kafka.destination import KafkaDestination
    from hub.source import Document
    from tests.fixtures_kafka import consume_all_async

    topic = unique("dlt")
    await sasl_kafka.create_topic(topic)
    options = sasl_kafka.source_options("SCRAM-SHA-256", password="not-the-password")
    wrong = KafkaDestination(
        KafkaDestinationConfig(type="kafka", bootstrap_servers=sasl_kafka.address, topic=topic, **options)
    )
    with pytest.raises(KafkaAuthenticationError) as refused:
        await within(wrong.send([Document({"n": 1})]), 30)
    await wrong.close()
    assert "SCRAM-SHA-256" in str(refused.value) and "not-the-password" not in str(refused.value)
    right = KafkaDestination(
        KafkaDestinationConfig(
            type="kafka", bootstrap_servers=sasl_kafka.address, topic=topic, **sasl_kafka.source_options()
        )
    )
    await within(right.send([Document({"n": 2}, key=b"k")]), 30)
    await right.close()
    got = await consume_all_async(sasl_kafka.address, topic, 1, **sasl_kafka.client())
    assert [(m.key, json.loads(m.value)) for m in got] == [(b"k", {"n": 2})]
