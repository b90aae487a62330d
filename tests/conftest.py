"""What every test shares: the fixture modules, loaded as plugins (a test asks for `moto`, `tansu`, `redis_url`,
`postgres_url`, `broker`... by name, without importing them), and a clean slate of secrets between tests.

Their plain helpers (`create_stream`, `unique`, `connection`...) are imported from the modules as usual."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub import redact

pytest_plugins = [
    "tests.fixtures_aws",
    "tests.fixtures_browser",
    "tests.fixtures_kafka",
    "tests.fixtures_mqtt",
    "tests.fixtures_nats",
    "tests.fixtures_postgres",
    "tests.fixtures_rabbitmq",
    "tests.fixtures_redis",
]


@pytest.fixture(autouse=True)
def _no_secrets_from_other_tests() -> Iterator[None]:
    """The hub masks every secret a configuration it loaded holds, for the life of the process: a test that runs a
    command in-process must not mask what the next test prints."""
    yield
    redact.forget()
