"""The machine's RabbitMQ (amqp://guest:guest@127.0.0.1:5672/; HUB_TEST_AMQP_URL to use another), started if it is
down, for the tests that need one. Loaded for every test by tests/conftest.py; ask for:

- `rabbitmq_server`: the URL, once RabbitMQ answers (started as the machine starts it if it does not; never skipped);
- `broker`: the test's own connection (`Broker`) for async tests: queues it makes are deleted afterwards;
- `sync_broker`: the same calls from a synchronous test (`SyncBroker`).

Every test uses queues of its own (`Broker.queue()` names them uniquely).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.helpers import wait_for

if TYPE_CHECKING:
    import aio_pika.abc

AMQP_URL = os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def reachable(url: str = AMQP_URL) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbitmq_server() -> str:
    """The URL of the machine's RabbitMQ; started (as the machine starts it) if it is not running. Never skipped."""
    if not reachable():
        server = shutil.which("rabbitmq-server")
        assert server, f"no RabbitMQ at {AMQP_URL} and no rabbitmq-server to start one (set HUB_TEST_AMQP_URL)"
        subprocess.run([server, "-detached"], check=False, capture_output=True, timeout=60)
        wait_for(reachable, timeout=90, what=f"RabbitMQ at {AMQP_URL}", every=0.5)
    return AMQP_URL


class Broker:
    """The test's own connection, for publishing, inspecting and deleting its queues."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self.channel = channel
        self.queues: list[str] = []

    async def queue(self, kind: str = "classic", **arguments: Any) -> str:
        name = f"hub-test-{uuid.uuid4().hex[:10]}"
        await self.channel.declare_queue(name, durable=True, arguments={"x-queue-type": kind, **arguments})
        self.queues.append(name)
        return name

    async def publish(self, queue: str, body: bytes, **properties: Any) -> None:
        import aio_pika

        await self.channel.default_exchange.publish(aio_pika.Message(body, **properties), routing_key=queue)

    async def count(self, queue: str) -> int:
        declared = await self.channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)

    async def get(self, queue: str) -> aio_pika.abc.AbstractIncomingMessage | None:
        declared = await self.channel.declare_queue(queue, passive=True)
        return await declared.get(fail=False, no_ack=True)


@pytest.fixture
async def broker(rabbitmq_server: str) -> AsyncIterator[Broker]:
    import aio_pika

    connection = await aio_pika.connect(rabbitmq_server, timeout=10)
    broker = Broker(await connection.channel())
    try:
        yield broker
    finally:
        channel = await connection.channel()
        for name in broker.queues:
            await channel.queue_delete(name)
        await connection.close()


class SyncBroker:
    """The Broker's calls from a synchronous test: each runs on a fresh connection in its own event loop."""

    def __init__(self, url: str = AMQP_URL) -> None:
        self.url = url
        self.queues: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                import aio_pika

                connection = await aio_pika.connect(self.url, timeout=10)
                try:
                    broker = Broker(await connection.channel())
                    result = await getattr(broker, name)(*args, **kwargs)
                    self.queues.extend(broker.queues)
                    return result
                finally:
                    await connection.close()

            return asyncio.run(run())

        return call

    def publish_many(self, queue: str, messages: list[tuple[bytes, dict[str, Any]]]) -> None:
        async def run() -> None:
            import aio_pika

            connection = await aio_pika.connect(self.url, timeout=10)
            try:
                broker = Broker(await connection.channel())
                for body, properties in messages:
                    await broker.publish(queue, body, **properties)
            finally:
                await connection.close()

        asyncio.run(run())

    def delete_all(self) -> None:
        async def run() -> None:
            import aio_pika

            connection = await aio_pika.connect(self.url, timeout=10)
            try:
                channel = await connection.channel()
                for name in self.queues:
                    await channel.queue_delete(name)
            finally:
                await connection.close()

        asyncio.run(run())


@pytest.fixture
def sync_broker(rabbitmq_server: str) -> Iterator[SyncBroker]:
    broker = SyncBroker(rabbitmq_server)
    try:
        yield broker
    finally:
        broker.delete_all()
