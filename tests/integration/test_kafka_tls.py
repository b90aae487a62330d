"""The `kafka` connector over TLS: SASL_SSL, SSL and SSL with a client certificate (mutual TLS).

The listeners are our SASL gate (tests/sasl_gate.py) serving TLS in front of tansu, with a throw-away CA and
certificates made per module (tests/tls_certs.py, see tests.fixtures_kafka.TlsBroker). The source reads over each;
a certificate it cannot verify (no ssl_cafile, another CA, a certificate for another host), a client certificate
missing or from an unknown CA, TLS on one side only and TLS files it cannot use make `open` raise KafkaTlsError, whose
message says what failed and which setting to check, and `close` is safe after it. The hub, given the wrong CA,
logs why, keeps retrying and delivers everything once the CA file is right.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka.config import KafkaTlsError
from tests.fixtures_kafka import (
    SASL_PASSWORD,
    SASL_USER,
    SaslBroker,
    TlsBroker,
    numbered,
    produce,
    produce_async,
    unique,
)
from tests.helpers import HubProcess, read_n, wait_for
from tests.integration.test_kafka import (
    Member,
    handled,
    hub_config,
    ids,
    in_order_per_partition,
    make_source,
    offsets,
    within,
)
from tests.tls_certs import TlsFiles, encrypted_key, make_tls_files


async def refused(address: str, **options: Any) -> str:
    """Open a source with `options`: it must raise KafkaTlsError, and close must be safe after it (twice)."""
    source = make_source(address, unique("t"), **options)
    with pytest.raises(KafkaTlsError) as caught:
        await within(source.open(), 20)
    await source.close()
    await source.close()
    return str(caught.value)


# ---- reading over TLS -----------------------------------------------------------------------------------------------


async def test_sasl_ssl_source_logs_in_and_reads_in_order(tls_kafka: TlsBroker) -> None:
    topic = unique("tls")
    await tls_kafka.create_topic(topic, 2)
    await produce_async(tls_kafka.address, topic, numbered(2, 6), **tls_kafka.client())
    before = len(tls_kafka.gate.successes)
    source = make_source(tls_kafka.address, topic, **tls_kafka.source_options("SCRAM-SHA-512"))
    async with Member(source) as member:
        lanes = await member.wait_lanes(2)
        for p in range(2):
            assert offsets(await read_n(lanes[f"{topic}-{p}"], 3)) == [0, 1, 2]
    assert ("SCRAM-SHA-512", SASL_USER) in tls_kafka.gate.successes[before:]


async def test_ssl_source_reads(ssl_kafka: TlsBroker) -> None:
    topic = unique("ssl")
    await ssl_kafka.create_topic(topic)
    await produce_async(ssl_kafka.address, topic, numbered(1, 3), **ssl_kafka.client())
    options = ssl_kafka.source_options()
    assert options == {"security_protocol": "SSL", "ssl_cafile": str(ssl_kafka.tls.ca)}
    async with Member(make_source(ssl_kafka.address, topic, **options)) as member:
        lanes = await member.wait_lanes(1)
        assert offsets(await read_n(lanes[f"{topic}-0"], 3)) == [0, 1, 2]


@pytest.mark.parametrize("key", ["plain key", "key with a password"])
async def test_mutual_tls_source_presents_its_certificate_and_reads(
    tmp_path: Path,
    mtls_kafka: TlsBroker,
    key: str,
) -> None:
    topic = unique("mtls")
    await mtls_kafka.create_topic(topic)
    await produce_async(mtls_kafka.address, topic, numbered(1, 2), **mtls_kafka.client())
    options = mtls_kafka.source_options()
    if key == "key with a password":
        password = "key-" + unique("pw")
        options.update(ssl_keyfile=str(encrypted_key(mtls_kafka.tls.client_key, password, tmp_path / "locked.key")))
        options.update(ssl_password=password)
    before = len(mtls_kafka.gate.peers)
    async with Member(make_source(mtls_kafka.address, topic, **options)) as member:
        lanes = await member.wait_lanes(1)
        assert offsets(await read_n(lanes[f"{topic}-0"], 2)) == [0, 1]
    assert mtls_kafka.tls.client_name in mtls_kafka.gate.peers[before:]


# ---- what a failed TLS connection says ------------------------------------------------------------------------------


@pytest.mark.parametrize("ca", ["no ssl_cafile", "another CA"])
async def test_a_broker_certificate_the_client_cannot_verify_fails_open_and_says_why(
    tmp_path: Path,
    tls_kafka: TlsBroker,
    ca: str,
) -> None:
    options = tls_kafka.source_options()
    if ca == "no ssl_cafile":
        del options["ssl_cafile"]  # the system's CAs, which never signed a throw-away certificate
        fix = "ssl_cafile is not set, so only CAs the system trusts are accepted"
    else:
        options["ssl_cafile"] = other = str(make_tls_files(tmp_path / "other").ca)
        fix = f"is ssl_cafile ({other}) the CA that signed the brokers' certificates?"
    logins = len(tls_kafka.gate.successes) + len(tls_kafka.gate.failures)
    message = await refused(tls_kafka.address, **options)
    assert message.startswith(f"TLS certificate verification failed at {tls_kafka.address} (")
    assert "unable to get local issuer certificate" in message and fix in message
    assert SASL_PASSWORD not in message
    assert len(tls_kafka.gate.successes) + len(tls_kafka.gate.failures) == logins, "no login over an unverified TLS"


async def test_a_broker_certificate_for_another_host_is_named(tmp_path: Path) -> None:
    elsewhere = TlsBroker(make_tls_files(tmp_path, server_names=("broker.invalid",)), sasl=False)
    try:
        message = await refused(elsewhere.address, **elsewhere.source_options())
    finally:
        elsewhere.stop()
    assert f"TLS certificate verification failed at {elsewhere.address}" in message
    assert "certificate is not valid for '127.0.0.1'" in message and "connect by a name" in message


@pytest.mark.parametrize("certificate", ["none", "from another CA"])
async def test_a_missing_or_unknown_client_certificate_fails_open_and_says_why(
    tmp_path: Path,
    mtls_kafka: TlsBroker,
    certificate: str,
) -> None:
    options = mtls_kafka.source_options()
    if certificate == "none":
        del options["ssl_certfile"], options["ssl_keyfile"]
        fix = "if it demands a client certificate (mutual TLS), set ssl_certfile and ssl_keyfile"
    else:
        other = make_tls_files(tmp_path / "other")
        options.update(ssl_certfile=str(other.client_cert), ssl_keyfile=str(other.client_key))
        fix = f"does it accept the client certificate of ssl_certfile ({other.client_cert}), signed by a CA it trusts"
    message = await refused(mtls_kafka.address, **options)
    # the gate (Python's TLS, TLS 1.3) hangs up after the handshake; a broker on TLS 1.2 refuses during it
    assert message.startswith(f"{mtls_kafka.address} closed the connection right after the TLS handshake, without ")
    assert fix in message


@pytest.mark.parametrize(("protocol", "use"), [("SASL_PLAINTEXT", "SASL_SSL"), ("PLAINTEXT", "SSL")])
async def test_a_client_without_tls_at_a_tls_listener_is_told_to_use_tls(
    tls_kafka: TlsBroker,
    ssl_kafka: TlsBroker,
    protocol: str,
    use: str,
) -> None:
    broker = tls_kafka if protocol == "SASL_PLAINTEXT" else ssl_kafka
    options = {k: v for k, v in broker.source_options().items() if not k.startswith("ssl_")}
    message = await refused(broker.address, **{**options, "security_protocol": protocol})
    assert message.startswith(f"{broker.address} is a TLS listener but security_protocol is {protocol}: use {use}")


async def test_a_tls_client_at_a_listener_without_tls_is_asked_whether_it_is_one(
    sasl_kafka: SaslBroker,
    tls_files: TlsFiles,
) -> None:
    options = {**sasl_kafka.source_options(), "security_protocol": "SASL_SSL", "ssl_cafile": str(tls_files.ca)}
    message = await refused(sasl_kafka.address, **options)
    assert message.startswith(f"TLS handshake failed at {sasl_kafka.address} (")
    assert "is it a TLS listener (security_protocol SASL_SSL)?" in message


@pytest.mark.parametrize("problem", ["missing file", "not a certificate", "key of another certificate", "no password"])
async def test_tls_files_that_cannot_be_used_are_named(tmp_path: Path, tls_files: TlsFiles, problem: str) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    options: dict[str, Any] = {"security_protocol": "SSL", "ssl_cafile": str(tls_files.ca)}
    mutual = {"ssl_certfile": str(tls_files.client_cert), "ssl_keyfile": str(tls_files.client_key)}
    if problem == "missing file":
        options.update(mutual, ssl_keyfile=str(tmp_path / "gone.key"))
        expected = f"ssl_keyfile {str(tmp_path / 'gone.key')!r} is not a file"
    elif problem == "not a certificate":
        options["ssl_cafile"] = str(junk)
        expected = f"ssl_cafile {str(junk)!r} holds no PEM CA certificate ("
    elif problem == "key of another certificate":
        options.update(mutual, ssl_keyfile=str(tls_files.server_key))
        expected = f"cannot use the client certificate in ssl_certfile {str(tls_files.client_cert)!r} with the key in"
    else:
        locked = encrypted_key(tls_files.client_key, "secret", tmp_path / "locked.key")
        options.update(mutual, ssl_keyfile=str(locked))
        expected = f"the private key in {str(locked)!r} is encrypted: set ssl_password"
    message = await refused("127.0.0.1:9", **options)  # fails before connecting: no broker needed
    assert message.startswith(expected)


# ---- the hub, end to end --------------------------------------------------------------------------------------------


def test_hub_over_sasl_ssl_says_why_with_the_wrong_ca_then_delivers_in_order(
    tmp_path: Path,
    tls_kafka: TlsBroker,
) -> None:
    topic, group, out = unique("t"), unique("g"), tmp_path / "calls.jsonl"
    asyncio.run(tls_kafka.create_topic(topic, 2))
    produce(tls_kafka.address, topic, numbered(2, 10), **tls_kafka.client())
    ca = tmp_path / "ca.pem"  # first holds a CA that did not sign the broker's certificate, as before a rotation
    ca.write_bytes(make_tls_files(tmp_path / "other").ca.read_bytes())
    source = {**tls_kafka.source_options("SCRAM-SHA-512"), "ssl_cafile": str(ca)}
    config = hub_config(tmp_path, tls_kafka.address, topic, group, source=source)
    logins, refusals = len(tls_kafka.gate.successes), len(tls_kafka.gate.failures)
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start(ready=None)
        hub.wait_log(f"source failed: KafkaTlsError: TLS certificate verification failed at {tls_kafka.address}")
        assert hub.proc is not None and hub.proc.poll() is None, "the hub must not stop on a TLS failure"
        assert len(tls_kafka.gate.successes) == logins and len(tls_kafka.gate.failures) == refusals, (
            "no login over a connection it could not verify"
        )
        fixed = tmp_path / "ca.pem.new"
        fixed.write_bytes(tls_kafka.tls.ca.read_bytes())
        os.replace(fixed, ca)  # the next reopen loads the right CA
        hub.wait_log("partitions assigned", timeout=40)
        wait_for(lambda: len(ids(out)) == 10, 30, "10 records handled")
        rows = handled(out)
        assert len(rows) == 10 and in_order_per_partition(rows)
        assert ("SCRAM-SHA-512", SASL_USER) in tls_kafka.gate.successes[logins:]
        assert hub.stop() == 0
        assert SASL_PASSWORD not in hub.log(), "the password must never be logged"
