"""One fixture per connector, each giving the suite that connector's Kit (tests/connectors/kit.py).

A new connector gets every scenario of tests/connectors/test_suite.py by adding one fixture here, decorated with
`@connector(TheKit)`: the suite runs each scenario for each connector whose kit supports it (a scenario marked
`needs("cuttable")` runs for the kits whose `cuttable` is true, and no other: nothing is skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.kit import Kit
from tests.connectors.kits_aws import DynamoDBKit, KinesisKit, S3Kit, SqsKit
from tests.connectors.kits_brokers import KafkaKit, RabbitMQKit, RedisKit
from tests.connectors.kits_local import FilesKit, MemoryKit, MemoryQueueKit, ScheduleKit
from tests.connectors.kits_postgres import PostgresKit
from tests.fixtures_redis import RedisServer

KITS: dict[str, tuple[str, type[Kit]]] = {}
"""Every connector of the suite: its test id, and its fixture's name and Kit class."""


def connector(kit: type[Kit], name: str | None = None) -> Callable[[Callable[..., Iterator[Kit]]], Any]:
    """Make a generator function a fixture that yields a `kit` (closed after the test), and enter it in the suite."""

    def register(function: Callable[..., Iterator[Kit]]) -> Any:
        KITS[name or kit.type] = (function.__name__, kit)
        return pytest.fixture(function)

    return register


@connector(MemoryKit)
def memory_kit() -> Iterator[Kit]:
    kit = MemoryKit()
    yield kit
    kit.close()


@connector(MemoryQueueKit, "memory-queue")
def memory_queue_kit() -> Iterator[Kit]:
    kit = MemoryQueueKit()
    yield kit
    kit.close()


@connector(KafkaKit)
def kafka_kit(tansu: str) -> Iterator[Kit]:
    kit = KafkaKit(tansu)
    yield kit
    kit.close()


@connector(RedisKit)
def redis_kit(redis_server: RedisServer) -> Iterator[Kit]:
    kit = RedisKit(redis_server.port)
    yield kit
    kit.close()


@connector(RabbitMQKit)
def rabbitmq_kit(rabbitmq_server: str) -> Iterator[Kit]:
    kit = RabbitMQKit(rabbitmq_server)
    yield kit
    kit.close()


@connector(PostgresKit)
def postgres_kit(logical_postgres: str) -> Iterator[Kit]:
    kit = PostgresKit(logical_postgres)
    yield kit
    kit.close()


@connector(SqsKit)
def sqs_kit(moto: str) -> Iterator[Kit]:
    kit = SqsKit(moto)
    yield kit
    kit.close()


@connector(KinesisKit)
def kinesis_kit(moto: str) -> Iterator[Kit]:
    kit = KinesisKit(moto)
    yield kit
    kit.close()


@connector(DynamoDBKit)
def dynamodb_kit(moto: str) -> Iterator[Kit]:
    kit = DynamoDBKit(moto)
    yield kit
    kit.close()


@connector(S3Kit)
def s3_kit(moto: str) -> Iterator[Kit]:
    kit = S3Kit(moto)
    yield kit
    kit.close()


@connector(FilesKit)
def files_kit(tmp_path: Path) -> Iterator[Kit]:
    kit = FilesKit(tmp_path)
    yield kit
    kit.close()


@connector(ScheduleKit)
def schedule_kit() -> Iterator[Kit]:
    kit = ScheduleKit()
    yield kit
    kit.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(*capabilities): run the scenario only for kits that have them all")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`kit` is every connector whose kit has what the scenario `needs`."""
    if "kit" not in metafunc.fixturenames:
        return
    needs = [name for marker in metafunc.definition.iter_markers("needs") for name in marker.args]
    names = [name for name, (_, kit) in KITS.items() if all(getattr(kit, need) for need in needs)]
    metafunc.parametrize("kit", names, indirect=True)


@pytest.fixture
def kit(request: pytest.FixtureRequest) -> Kit:
    fixture, _ = KITS[request.param]
    found: Kit = request.getfixturevalue(fixture)
    return found
