"""The kits of the brokers the tests run or find: `kafka` (tansu), `redis` (redis-server) and `rabbitmq` (the
machine's). A cuttable resource is reached through a TcpProxy (tests.helpers); Kafka's through a broker of its own
that advertises the proxy (tests.fixtures_kafka.ProxiedTansu), since Kafka clients go to the advertised address."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from tests.connectors.kit import Kit, Resource, unique
from tests.fixtures_kafka import ProxiedTansu, create_topic, produce
from tests.fixtures_rabbitmq import SyncBroker
from tests.helpers import TcpProxy


class KafkaKit(Kit):
    """A topic of two partitions read by a consumer group of its own; record n goes to partition n % 2. A failed
    record is read again after a restart: the group's committed offset holds at it (connectors/kafka)."""

    type = "kafka"
    ordered = True
    rereads_in_session = False
    lanes = 2

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.brokers: list[ProxiedTansu] = []

    def fresh(self, cuttable: bool = False) -> Resource:
        address = self.bootstrap
        extra: dict[str, Any] = {}
        if cuttable:
            broker = ProxiedTansu()
            self.brokers.append(broker)
            address, extra["broker"] = broker.address, broker
        topic = unique("suite")
        create_topic(address, topic, self.lanes)
        return Resource(topic, {**extra, "address": address, "group": unique("group")})

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        messages: list[Any] = [
            (n % self.lanes, b"k%d" % (n % self.lanes), json.dumps({"n": n}).encode()) for n in numbers
        ]
        deadline = time.monotonic() + 60
        while True:  # a cut broker takes them once it is back
            try:
                produce(resource.extra["address"], resource.name, messages)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [
            (lane, json.loads(base64.b64decode(record["value"]))["n"])
            for lane, records in event["records"].items()
            for record in records
        ]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {
            "type": "kafka",
            "bootstrap_servers": resource.extra["address"],
            "topic": resource.name,
            "consumer_group_id": resource.extra["group"],
            "starting_position": "TRIM_HORIZON",
            "session_timeout": "2s",
        }

    def cut(self, resource: Resource) -> None:
        resource.extra["broker"].proxy.cut(refuse=True)

    def restore(self, resource: Resource) -> None:
        resource.extra["broker"].proxy.restore()

    def close(self) -> None:
        for broker in self.brokers:
            broker.stop()


class RedisKit(Kit):
    """A stream read by a consumer group. The consumer is named after the process (the default): a source opened
    again in the same process reads its own pending entries again at once; a restarted hub (another pid) claims
    those of the killed one after `claim_idle_time`, as it claims a failed entry."""

    type = "redis"
    counts_deliveries = True
    mapping = {"max_concurrency": 2}

    def __init__(self, port: int) -> None:
        import redis

        self.port = port
        self.client = redis.Redis(port=port)
        self.proxies: list[TcpProxy] = []

    def fresh(self, cuttable: bool = False) -> Resource:
        port = self.port
        extra: dict[str, Any] = {}
        if cuttable:
            proxy = TcpProxy(self.port)
            self.proxies.append(proxy)
            port, extra["proxy"] = proxy.port, proxy
        return Resource(unique("suite"), {**extra, "url": f"redis://127.0.0.1:{port}/0"})

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for n in numbers:
            pipe.xadd(resource.name, {"n": str(n)})
        pipe.execute()

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [(record["stream"], int(record["data"]["n"])) for record in event["Records"]]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {
            "type": "redis",
            "url": resource.extra["url"],
            "stream": resource.name,
            "consumer_group": resource.name,
            "block": "200ms",
            "claim_idle_time": "500ms",
        }

    def leftover(self, resource: Resource) -> int:
        return int(self.client.xpending(resource.name, resource.name)["pending"])

    def cut(self, resource: Resource) -> None:
        resource.extra["proxy"].cut()

    def restore(self, resource: Resource) -> None:
        resource.extra["proxy"].restore()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        self.client.close()


class RabbitMQKit(Kit):
    """A classic queue of its own; unacked messages go back to it when a connection closes. A broker restart is not
    possible here (the machine's RabbitMQ): a cuttable queue is reached through a TcpProxy."""

    type = "rabbitmq"
    counts_deliveries = True
    mapping = {"max_concurrency": 2}

    def __init__(self, url: str) -> None:
        self.url = url
        self.broker = SyncBroker(url)
        self.proxies: list[TcpProxy] = []

    def fresh(self, cuttable: bool = False) -> Resource:
        from urllib.parse import urlsplit

        url = self.url
        extra: dict[str, Any] = {}
        if cuttable:
            parts = urlsplit(url)
            proxy = TcpProxy(parts.port or 5672, parts.hostname or "127.0.0.1")
            self.proxies.append(proxy)
            url, extra["proxy"] = (
                parts._replace(netloc=f"{parts.username}:{parts.password}@{proxy.url_host}").geturl(),
                proxy,
            )
        return Resource(self.broker.queue(), {**extra, "url": url})

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        messages = [(json.dumps({"n": n}).encode(), {"message_id": uuid.uuid4().hex}) for n in numbers]
        self.broker.publish_many(resource.name, messages)

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [
            (lane, json.loads(base64.b64decode(message["data"]))["n"])
            for lane, messages in event["rmqMessagesByQueue"].items()
            for message in messages
        ]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {"type": "rabbitmq", "url": resource.extra["url"], "queue": resource.name, "redelivery_delay": "100ms"}

    def leftover(self, resource: Resource) -> int:
        return int(self.broker.count(resource.name))

    def cut(self, resource: Resource) -> None:
        resource.extra["proxy"].cut()

    def restore(self, resource: Resource) -> None:
        resource.extra["proxy"].restore()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        self.broker.delete_all()
