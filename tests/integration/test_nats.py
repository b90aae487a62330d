"""The `nats` connector against a real nats-server with JetStream (tests/fixtures_nats.py): the source in process,
then the hub as a real process. Every test uses a stream of its own (and so consumers of its own)."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import pytest
from nats.js.api import ConsumerConfig, RetentionPolicy

from connectors.nats import CONNECTOR, NatsConfig, NatsSource, delivery, durable_name
from hub.checkpoints import MemoryStore
from hub.config import ConfigError, load_config
from hub.records import Outcome, Record
from hub.source import LaneEnded, SourceContext
from tests.helpers import HubProcess, read_jsonl, run_cli, shape, wait_for
from tests.tls_certs import make_tls_files

if TYPE_CHECKING:
    from tests.fixtures_nats import NatsServer


def unique(prefix: str = "T") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


class Broker:
    """The test's own connection: streams, publishing, and what the consumer on the server says."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=10)

    async def stream(self, retention: RetentionPolicy = RetentionPolicy.LIMITS) -> str:
        name = unique("S")
        await self.js.add_stream(name=name, subjects=[f"{name.lower()}.>"], retention=retention)
        return name

    async def publish(self, stream: str, data: bytes, subject: str = "a", **kwargs: Any) -> int:
        ack = await self.js.publish(f"{stream.lower()}.{subject}", data, **kwargs)
        return int(ack.seq)

    async def consumer(self, stream: str, name: str) -> Any:
        return await self.js.consumer_info(stream, name)


@pytest.fixture
async def broker(nats_url: str) -> AsyncIterator[Broker]:
    nc = await nats.connect(nats_url, allow_reconnect=False)
    try:
        yield Broker(nc)
    finally:
        await nc.close()


def make_source(url: str, stream: str, mapping: str = "m", max_in_flight: int = 1, **settings: Any) -> NatsSource:
    retry = {k: settings.pop(k) for k in ("retry_delay", "maximum_retry_delay") if k in settings}
    config = NatsConfig.model_validate({"type": "nats", "servers": url, "stream": stream, **settings})
    context = SourceContext(mapping, MemoryStore(), "eu-west-1", "000000000000", max_in_flight=max_in_flight, **retry)
    return NatsSource(config, context)


async def read_n(source: NatsSource, n: int, timeout: float = 10.0) -> list[Record]:
    out: list[Record] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.extend(await source.read(n - len(out), 0.5))
    return out


def data(record: Record) -> bytes:
    return base64.b64decode(record.payload["data"])


# ---- the source in process -----------------------------------------------------------------------------------


async def test_read_renders_events_and_settle_acks(broker: Broker, nats_url: str) -> None:
    stream = await broker.stream()
    seqs = [
        await broker.publish(stream, b'{"item":"book","qty":2}', "created", headers={"Nats-Msg-Id": "o-1", "k": "v"}),
        await broker.publish(stream, b"not json", "created"),
        await broker.publish(stream, b"\xff\x00binary", "other"),
    ]
    source = make_source(nats_url, stream, mapping="orders mapping.v2")
    assert source.consumer == "orders-mapping-v2"
    await source.open()
    try:
        lanes = source.lanes()
        assert await anext(lanes) is source
        assert (source.key, source.ordered) == (f"{stream}/orders-mapping-v2", False)
        records = await read_n(source, 3)
        event = source.render(records, 1)
        assert list(event) == ["Records"]
        first = event["Records"][0]
        (sample,) = CONNECTOR.sample_event()["Records"]
        assert shape(first | {"headers": {}}) == shape(sample | {"headers": {}})
        assert first["messageId"] == str(seqs[0]) and records[0].item_id == str(seqs[0])
        assert first["subject"] == f"{stream.lower()}.created"
        assert first["headers"] == {"Nats-Msg-Id": "o-1", "k": "v"}
        assert (first["stream"], first["consumer"]) == (stream, "orders-mapping-v2")
        assert first["sequence"]["stream"] == seqs[0] and first["sequence"]["consumer"] == 1
        assert first["attributes"]["ApproximateReceiveCount"] == "1"
        assert abs(int(first["attributes"]["SentTimestamp"]) / 1000 - records[0].timestamp) < 0.001
        assert first["eventSource"] == "nats:jetstream" and first["awsRegion"] == "eu-west-1"
        assert first["eventSourceARN"] == f"{nats_url}/{stream}/orders-mapping-v2"
        assert [data(r) for r in records] == [b'{"item":"book","qty":2}', b"not json", b"\xff\x00binary"]
        assert event["Records"][1]["headers"] == {}
        assert [r.attempt for r in records] == [1, 1, 1]
        assert [r.position for r in records] == seqs
        views = [source.filter_view(r) for r in records]
        assert views[0]["data"] == {"item": "book", "qty": 2} and views[0]["subject"].endswith(".created")
        assert views[1]["data"] == "not json" and "data" not in views[2]
        await source.settle(Outcome(succeeded=(records[0], records[2]), filtered=(records[1],)))
        info = await wait_for_consumer(broker, stream, "orders-mapping-v2", lambda i: i.ack_floor.stream_seq == seqs[2])
        assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)
    finally:
        await source.close()


async def publish_raw(nats_url: str, subject: bytes, payload: bytes) -> None:
    """Publish as a client that sends its subject's bytes as they are (nats-server takes any but white space)."""
    host, port = nats_url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        writer.write(b"PUB " + subject + b" %d\r\n" % len(payload) + payload + b"\r\nPING\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            while (line := await reader.readline()) != b"PONG\r\n":
                assert line and not line.startswith(b"-ERR"), line
    finally:
        writer.close()


async def test_a_subject_that_is_not_utf8_is_delivered_with_its_bytes_shown(broker: Broker, nats_url: str) -> None:
    """nats-py alone drops the connection on such a subject, and JetStream sends the message again for ever."""
    stream = await broker.stream()
    await publish_raw(nats_url, f"{stream.lower()}.caf".encode() + b"\xe9", b"odd")
    after = await broker.publish(stream, b"next", "plain")
    source = make_source(nats_url, stream)
    await source.open()
    try:
        records = await read_n(source, 2)
        assert [r.payload["subject"] for r in records] == [f"{stream.lower()}.caf\\xe9", f"{stream.lower()}.plain"]
        assert [data(r) for r in records] == [b"odd", b"next"]
        await source.settle(Outcome(succeeded=tuple(records)))
        info = await wait_for_consumer(broker, stream, "m", lambda i: i.ack_floor.stream_seq == after)
        assert (info.num_ack_pending, info.num_redelivered) == (0, 0)
    finally:
        await source.close()


async def wait_for_consumer(broker: Broker, stream: str, name: str, condition: Any, timeout: float = 10.0) -> Any:
    """The consumer's info once `condition(info)` holds (acks reach the server asynchronously)."""
    async with asyncio.timeout(timeout):
        while not condition(info := await broker.consumer(stream, name)):
            await asyncio.sleep(0.02)
    return info


async def test_failed_messages_are_nakd_with_the_mappings_backoff_and_come_back_counted(
    broker: Broker, nats_url: str
) -> None:
    stream = await broker.stream(RetentionPolicy.WORK_QUEUE)
    seq = await broker.publish(stream, b"payload")
    source = make_source(nats_url, stream, retry_delay=1.0, maximum_retry_delay=1.0)
    await source.open()
    try:
        for attempt in (1, 2, 3):
            (record,) = await read_n(source, 1)
            assert (record.position, record.attempt) == (seq, attempt)
            assert record.payload["attributes"]["ApproximateReceiveCount"] == str(attempt)
            await source.settle(Outcome(failed=(record,)))
            # nak'd with a delay of at least half the retry delay (the backoff's jitter): not back at once
            assert await source.read(10, 0.2) == []
        (record,) = await read_n(source, 1)
        assert record.attempt == 4
        await source.settle(Outcome(given_up=(record,)))  # the destination took it: terminated
        info = await wait_for_consumer(broker, stream, source.consumer, lambda i: i.num_ack_pending == 0)
        assert info.num_pending == 0
        assert (await broker.js.stream_info(stream)).state.messages == 0  # a work queue drops it once terminated
        assert await source.read(10, 0.3) == []
    finally:
        await source.close()


async def test_unsettled_messages_come_back_after_a_close(broker: Broker, nats_url: str) -> None:
    """Messages in a batch when the source closes come back after the ack wait; buffered ones at once (nak'd)."""
    stream = await broker.stream()
    for i in range(6):
        await broker.publish(stream, str(i).encode())
    source = make_source(nats_url, stream, ack_wait="1s", prefetch=6)
    await source.open()
    in_batch = await read_n(source, 2)
    await wait_for_consumer(broker, stream, source.consumer, lambda i: i.num_ack_pending == 6)  # 4 more buffered
    await source.close()
    again = make_source(nats_url, stream, ack_wait="1s")
    await again.open()
    try:
        records = await read_n(again, 6)
        assert sorted(data(r) for r in records) == [str(i).encode() for i in range(6)]
        assert {r.attempt for r in records} == {2}
        assert {data(r) for r in records[-2:]} == {data(r) for r in in_batch}  # the ack wait ran out last
        await again.settle(Outcome(succeeded=tuple(records)))
        await wait_for_consumer(broker, stream, again.consumer, lambda i: i.num_ack_pending == 0)
    finally:
        await again.close()


async def test_a_slow_batch_keeps_its_messages_past_the_ack_wait(broker: Broker, nats_url: str) -> None:
    stream = await broker.stream()
    await broker.publish(stream, b"slow")
    source = make_source(nats_url, stream, ack_wait="1s")
    await source.open()
    try:
        (record,) = await read_n(source, 1)
        # three ack waits while "the function runs": reported in progress, so never delivered again
        assert await source.read(10, 3.0) == []
        info = await broker.consumer(stream, source.consumer)
        assert (info.num_redelivered, info.num_ack_pending) == (0, 1)
        await source.settle(Outcome(succeeded=(record,)))
        await wait_for_consumer(broker, stream, source.consumer, lambda i: i.num_ack_pending == 0)
    finally:
        await source.close()


async def test_a_read_cancelled_as_something_arrives_still_ends(broker: Broker, nats_url: str) -> None:
    """Stopping cancels a waiting read; a message or a status that wakes it at that very moment must not swallow the
    cancellation (Python 3.11's asyncio.wait_for does), or the read waits for records for ever and the hub never
    stops."""
    stream = await broker.stream()
    source = make_source(nats_url, stream)
    await source.open()
    try:
        reading = asyncio.ensure_future(source.read(1, None))
        await wait_for_consumer(broker, stream, source.consumer, lambda i: i.num_waiting >= 1)
        source._arrived.set()  # what a delivery or a `408 Request Timeout` does, in the same turn as the cancel
        reading.cancel()
        done, _ = await asyncio.wait({reading}, timeout=5)
        assert done and reading.cancelled()
    finally:
        await source.close()


async def test_the_consumer_is_created_as_configured_or_refused(broker: Broker, nats_url: str) -> None:
    stream = await broker.stream()
    await broker.publish(stream, b"old", "x")
    missing = make_source(nats_url, unique("NOSTREAM"))
    with pytest.raises(LookupError, match="there is no stream"):
        await missing.open()
    await missing.close()
    absent = make_source(nats_url, stream, consumer="absent", create_consumer=False)
    with pytest.raises(LookupError, match="create_consumer is false"):
        await absent.open()
    await absent.close()

    latest = make_source(
        nats_url,
        stream,
        consumer="latest",
        starting_position="LATEST",
        filter_subject=f"{stream.lower()}.x",
        ack_wait="7s",
        max_deliver=5,
        max_ack_pending=50,
    )
    await latest.open()
    try:
        config = (await broker.consumer(stream, "latest")).config
        assert [getattr(v, "value", v) for v in (config.deliver_policy, config.ack_policy)] == ["new", "explicit"]
        assert (config.ack_wait, config.max_deliver, config.max_ack_pending) == (7.0, 5, 50)
        assert config.filter_subject == f"{stream.lower()}.x"
        assert latest.ack_wait == 7.0
        await broker.publish(stream, b"other subject", "y")
        await broker.publish(stream, b"new", "x")
        (record,) = await read_n(latest, 1)
        assert data(record) == b"new"
        await latest.settle(Outcome(succeeded=(record,)))
    finally:
        await latest.close()

    for settings, error in [
        ({"filter_subject": f"{stream.lower()}.z", "max_deliver": 5}, "reads subjects"),
        ({"filter_subject": f"{stream.lower()}.x"}, "stops delivering a message after 5 deliveries"),
    ]:
        other = make_source(nats_url, stream, consumer="latest", **settings)
        with pytest.raises(ValueError, match=error):
            await other.open()
        await other.close()
    await broker.js.add_consumer(stream, ConsumerConfig(durable_name="pushed", deliver_subject="somewhere"))
    pushed = make_source(nats_url, stream, consumer="pushed")
    with pytest.raises(ValueError, match="push consumer"):
        await pushed.open()
    await pushed.close()


async def test_a_deleted_consumer_ends_the_source_and_reopening_creates_it_again(broker: Broker, nats_url: str) -> None:
    stream = await broker.stream()
    source = make_source(nats_url, stream)
    await source.open()
    lanes = source.lanes()
    assert await anext(lanes) is source
    reading = asyncio.ensure_future(source.read(1, None))
    await wait_for_consumer(broker, stream, source.consumer, lambda i: i.num_waiting >= 1)
    await broker.js.delete_consumer(stream, source.consumer)
    with pytest.raises(ConnectionError, match="Deleted"):
        await asyncio.wait_for(reading, 10)
    with pytest.raises(ConnectionError):
        await anext(lanes)
    await source.close()
    await source.open()  # the mapping reopens it
    try:
        await broker.publish(stream, b"after")
        (record,) = await read_n(source, 1)
        assert data(record) == b"after"
    finally:
        await source.close()
        await source.close()
    with pytest.raises(LaneEnded):
        await source.read(1, 0.1)


async def test_a_refused_pull_request_fails_the_read_and_the_next_one_goes_on(broker: Broker, nats_url: str) -> None:
    stream = await broker.stream()
    await broker.js.add_consumer(stream, ConsumerConfig(durable_name="narrow", max_waiting=1))
    first, second = (make_source(nats_url, stream, consumer="narrow") for _ in range(2))
    await first.open()
    await second.open()
    try:
        assert await first.read(1, 0.2) == []  # its pull request waits on the server: the only one allowed
        with pytest.raises(RuntimeError, match=r"refused a pull request .*409 .*Exceeded MaxWaiting"):
            await second.read(1, 5.0)
        await first.close()  # its request goes with its connection, once the server has noticed

        async def forgotten() -> bool:
            return (await broker.js.consumer_info(stream, "narrow")).num_waiting == 0

        deadline = asyncio.get_running_loop().time() + 10
        while not await forgotten():
            assert asyncio.get_running_loop().time() < deadline, "the server kept the closed client's pull request"
            await asyncio.sleep(0.02)
        await broker.publish(stream, b"then")
        (record,) = await read_n(second, 1)
        assert data(record) == b"then"
        await second.settle(Outcome(succeeded=(record,)))
    finally:
        await first.close()
        await second.close()


async def test_tls_with_a_client_certificate_and_a_token(tmp_path: Path, make_nats: Callable[..., NatsServer]) -> None:
    files = make_tls_files(tmp_path)
    token = "tok-" + uuid.uuid4().hex
    tls = ["--tls", "--tlscert", str(files.server_cert), "--tlskey", str(files.server_key)]
    mutual = ["--tlsverify", "--tlscacert", str(files.ca), "--auth", token]
    server = make_nats(*tls, *mutual)
    settings = {"tls_ca_file": str(files.ca), "tls_cert_file": str(files.client_cert)}
    settings["tls_key_file"] = str(files.client_key)
    admin = make_source(server.url, "TLS", token=token, **settings)
    context = NatsConfig.model_validate(
        {"type": "nats", "servers": server.url, "stream": "TLS", **settings}
    ).ssl_context()
    nc = await nats.connect(server.url, tls=context, token=token, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=10)
        await js.add_stream(name="TLS", subjects=["tls.>"])
        await js.publish("tls.a", b"secret stuff")
    finally:
        await nc.close()
    await admin.open()
    try:
        (record,) = await read_n(admin, 1)
        assert data(record) == b"secret stuff"
        await admin.settle(Outcome(succeeded=(record,)))
    finally:
        await admin.close()
    wrong_token = "wrong-" + uuid.uuid4().hex
    wrong = make_source(server.url, "TLS", token=wrong_token, **settings)
    with pytest.raises(nats.errors.Error) as refused:
        await wrong.open()
    await wrong.close()
    assert wrong_token not in str(refused.value)
    untrusted = make_source(server.url, "TLS", token=token, tls_ca_file=str(make_tls_files(tmp_path / "x").ca))
    with pytest.raises(Exception):  # noqa: B017 - the server's certificate is not signed by that CA
        await untrusted.open()
    await untrusted.close()


def test_config_checks_and_the_ack_subject() -> None:
    def config(**settings: Any) -> NatsConfig:
        return NatsConfig.model_validate({"type": "nats", "stream": "S", **settings})

    for settings, error in [
        ({"servers": "nats://u:p@host:4222"}, "no credentials in server URLs"),
        ({"servers": "http://host"}, "use nats://host:port"),
        ({"servers": []}, "at least one"),
        ({"user": "u"}, "user and password go together"),
        ({"user": "u", "password": "p", "token": "t"}, "log in one way"),
        ({"stream": "a.b"}, "not a valid stream name"),
        ({"consumer": "a b"}, "not a valid consumer name"),
        ({"filter_subject": "a..b"}, "is not a subject"),
        ({"filter_subject": ["a", "a"]}, "given twice"),
        ({"tls_key_file": "k.pem"}, "goes with tls_cert_file"),
    ]:
        with pytest.raises(ValueError, match=error):
            config(**settings)
    plain = config(servers=["nats://a:4222", "nats://b"], user="bob", password="s3cret")
    assert plain.public_server() == "nats://a:4222" and not plain.tls and plain.ssl_context() is None
    assert plain.login() == {"user": "bob", "password": "s3cret"}
    assert "s3cret" not in repr(plain)
    assert config(servers="tls://h:4443").tls and config(token="t").login() == {"token": "t"}
    assert durable_name("orders mapping.v2/eu*>") == "orders-mapping-v2-eu--"
    assert all(field.description for name, field in NatsConfig.model_fields.items() if name != "type")
    meta = delivery("$JS.ACK.ORDERS.c.3.1042.17.1718000000123456789.5")
    assert meta is not None
    assert (meta.stream, meta.consumer, meta.delivered, meta.stream_seq) == ("ORDERS", "c", 3, 1042)
    v2 = delivery("$JS.ACK.hub.ACCHASH.ORDERS.c.2.7.8.1718000000123456789.0.token")
    assert v2 is not None and (v2.stream, v2.delivered, v2.consumer_seq) == ("ORDERS", 2, 8)
    assert delivery("_INBOX.abc") is None and delivery("$JS.ACK.a.b.c.d.e.f.g") is None
    assert (CONNECTOR.family, CONNECTOR.data_key, CONNECTOR.shares_work) == ("queue", "data", True)


def test_max_deliver_needs_a_smaller_max_receive_count_and_a_destination(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    destination = "    destination_config: {on_failure: {type: file, path: dlq.jsonl}}\n"

    def write(extra: str) -> Path:
        path.write_text(
            "functions:\n"
            "  f: {handler: functions.recorder.record}\n"
            "mappings:\n"
            "  - function: f\n"
            "    source: {type: nats, stream: S, max_deliver: 5}\n" + extra
        )
        return path

    def error(extra: str) -> str:
        with pytest.raises(ConfigError) as caught:
            load_config(write(extra), env={})
        (message,) = caught.value.errors
        return str(message)

    assert f"{path}:5:" in error("") and "mappings[0].source.max_deliver: " in error("")
    assert "set max_receive_count to at most 4" in error("    max_receive_count: 5\n" + destination)
    assert "without reaching a destination" in error("    max_receive_count: 4\n")
    (ok,) = load_config(write("    max_receive_count: 4\n" + destination), env={}).mappings
    assert (ok.max_receive_count, ok.source.max_deliver) == (4, 5)


def test_hub_events_nats_prints_the_sample() -> None:
    result = run_cli("events", "nats")
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)["Records"]
    assert record["eventSource"] == "nats:jetstream"
    assert base64.b64decode(record["data"]) == b'{"item":"book","qty":2}'


# ---- the hub as a real process -------------------------------------------------------------------------------


class SyncBroker:
    """Broker calls from a synchronous test: each on a fresh connection in its own event loop."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, call: Any) -> Any:
        async def go() -> Any:
            nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=5)
            try:
                return await call(Broker(nc))
            finally:
                await nc.close()

        return asyncio.run(go())

    def stream(self) -> str:
        return str(self.run(lambda b: b.stream()))

    def publish_many(self, stream: str, bodies: list[bytes]) -> None:
        async def publish(b: Broker) -> None:
            for body in bodies:
                await b.publish(stream, body)

        self.run(publish)

    def consumer(self, stream: str, name: str) -> Any:
        return self.run(lambda b: b.consumer(stream, name))


@pytest.fixture
def sync_broker(nats_url: str) -> Iterator[SyncBroker]:
    yield SyncBroker(nats_url)


def hub_config(url: str, stream: str, handler: str, **mapping: Any) -> dict[str, Any]:
    source = {"type": "nats", "servers": url, "stream": stream, "ack_wait": "2s", "pull_wait": "1s"}
    source.update(mapping.pop("source", {}))
    return {
        "checkpoints": "memory://",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": handler, "timeout": "10s"}},
        "mappings": [{"name": "nats-e2e", "function": "fn", "source": source, **mapping}],
    }


def delivered(out: Path) -> list[dict[str, Any]]:
    return [record for entry in read_jsonl(out) for record in entry["event"]["Records"]]


def bodies(out: Path) -> list[str]:
    return [base64.b64decode(r["data"]).decode() for r in delivered(out)]


def test_a_failing_function_is_retried_by_redelivery_then_given_up_to_the_destination(
    tmp_path: Path, sync_broker: SyncBroker
) -> None:
    out, dlq = tmp_path / "calls.jsonl", tmp_path / "dlq.jsonl"
    stream = sync_broker.stream()
    sync_broker.publish_many(stream, [b'{"n": 1}'])
    config = hub_config(
        sync_broker.url,
        stream,
        "functions.recorder.fail",
        max_receive_count=3,
        retry_delay="200ms",
        destination_config={"on_failure": {"type": "file", "path": str(dlq)}},
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: read_jsonl(dlq), 20, "the failing message in the destination")
        counts = [r["attributes"]["ApproximateReceiveCount"] for r in delivered(out)]
        assert counts == ["1", "2", "3"]  # JetStream's delivery count is the attempt
        (failure,) = read_jsonl(dlq)
        assert failure["requestContext"]["condition"] == "MaxReceiveCountExceeded"
        assert failure["requestContext"]["approximateInvokeCount"] == 3
        assert failure["responsePayload"]["errorMessage"] == "this function always fails"
        info = wait_for(
            lambda: (i := sync_broker.consumer(stream, "nats-e2e")).num_ack_pending == 0 and i, 10, "the term"
        )
        assert (info.num_pending, info.num_redelivered) == (0, 0)
        assert hub.stop() == 0
    assert len(delivered(out)) == 3  # terminated: never delivered again


def test_a_restarted_hub_resumes_where_the_durable_consumer_stands(tmp_path: Path, sync_broker: SyncBroker) -> None:
    out = tmp_path / "calls.jsonl"
    stream = sync_broker.stream()
    sync_broker.publish_many(stream, [f"a{i}".encode() for i in range(5)])
    # a pull request that waits a minute on the server: stopping must not wait for it (HubProcess.stop allows 30 s)
    config = hub_config(sync_broker.url, stream, "functions.recorder.record", source={"pull_wait": "60s"})
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: len(bodies(out)) == 5, 20, "the first five")
        wait_for(lambda: sync_broker.consumer(stream, "nats-e2e").num_waiting >= 1, 10, "a waiting pull request")
        assert hub.stop() == 0
        sync_broker.publish_many(stream, [f"b{i}".encode() for i in range(5)])
        hub.start()
        wait_for(lambda: len(bodies(out)) == 10, 20, "the next five")
        assert hub.stop() == 0
    assert sorted(bodies(out)) == sorted([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)])


def test_sigkill_mid_stream_then_restart_loses_nothing(tmp_path: Path, sync_broker: SyncBroker) -> None:
    out = tmp_path / "calls.jsonl"
    stream = sync_broker.stream()
    sync_broker.publish_many(stream, [str(i).encode() for i in range(300)])
    config = hub_config(
        sync_broker.url, stream, "functions.recorder.slow", batch_size=10, maximum_batching_window=0, max_concurrency=2
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.05"}) as hub:
        hub.start()
        wait_for(lambda: len(bodies(out)) >= 60, 30, "some deliveries before the kill")
        hub.kill()
        assert len(set(bodies(out))) < 300  # killed mid-stream
        hub.start()
        wait_for(lambda: len(set(bodies(out))) == 300, 60, "every message delivered")
        assert hub.stop(signal.SIGTERM) == 0
    assert set(bodies(out)) == {str(i) for i in range(300)}
    # a duplicate is a message the killed hub had recorded and not acked: at most its batches in flight
    assert len(bodies(out)) - 300 <= 2 * 10


def test_the_broker_killed_and_restarted_mid_stream_loses_nothing(tmp_path: Path, own_nats: NatsServer) -> None:
    out = tmp_path / "calls.jsonl"
    broker = SyncBroker(own_nats.url)
    stream = broker.stream()
    broker.publish_many(stream, [f"a{i}".encode() for i in range(200)])
    config = hub_config(
        own_nats.url, stream, "functions.recorder.slow", batch_size=10, maximum_batching_window=0, max_concurrency=2
    )
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out), "SLOW_SECONDS": "0.05"}) as hub:
        hub.start()
        wait_for(lambda: len(bodies(out)) >= 40, 30, "some deliveries before the broker dies")
        own_nats.kill()
        hub.wait_log("source failed", 20)
        own_nats.start(same_port=True)
        broker.publish_many(stream, [f"b{i}".encode() for i in range(50)])
        expected = {f"a{i}" for i in range(200)} | {f"b{i}" for i in range(50)}
        wait_for(lambda: set(bodies(out)) == expected, 90, "every message after the broker came back")
        hub.wait_log("source reconnected", 5)
        info = wait_for(lambda: (i := broker.consumer(stream, "nats-e2e")).num_ack_pending == 0 and i, 20, "every ack")
        assert info.num_pending == 0
        assert hub.stop() == 0
    assert set(bodies(out)) == expected


def test_two_hubs_on_one_durable_consumer_share_the_messages(tmp_path: Path, sync_broker: SyncBroker) -> None:
    stream = sync_broker.stream()
    hubs, outs = [], []
    for i in (1, 2):
        workdir = tmp_path / f"hub{i}"
        workdir.mkdir()
        outs.append(workdir / "calls.jsonl")
        config = hub_config(
            sync_broker.url,
            stream,
            "functions.recorder.slow",
            batch_size=5,
            maximum_batching_window=0,
            max_concurrency=1,
            source={"ack_wait": "30s"},
        )
        hubs.append(HubProcess(workdir, config, {"RECORDER_OUT": str(outs[-1]), "SLOW_SECONDS": "0.02"}))
    try:
        for hub in hubs:
            hub.start()
            hub.wait_log("reading ")  # its source is open
        # both hubs wait with a pull request before anything is published: neither can take it all on its own
        wait_for(lambda: sync_broker.consumer(stream, "nats-e2e").num_waiting >= 2, 20, "a pull request of each hub")
        sync_broker.publish_many(stream, [str(i).encode() for i in range(200)])
        wait_for(lambda: sum(len(bodies(out)) for out in outs) >= 200, 60, "every message")
        for hub in hubs:
            assert hub.stop() == 0
    finally:
        for hub in hubs:
            hub.__exit__()
    first, second = bodies(outs[0]), bodies(outs[1])
    assert first and second  # each hub got some
    assert sorted(first + second, key=int) == [str(i) for i in range(200)]  # together all, each once
