"""`provisioned_poller_config`: where it is allowed, its ranges, the errors (file, line, field and why), and what
the hub makes of it (how many poller processes, each one's log lines tagged)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path
from typing import Any, Literal

import pytest

from hub import logs
from hub.config import ConfigError, HubConfig, load_config
from hub.pollers import Pollers

SOURCES: dict[str, str] = {
    "kafka": "{type: kafka, bootstrap_servers: 'localhost:9092', topic: t, starting_position: LATEST}",
    "sqs": "{type: sqs, queue_url: 'http://localhost:4566/000000000000/q'}",
    "redis": "{type: redis, stream: s}",
    "rabbitmq": "{type: rabbitmq, queue: q}",
    "nats": "{type: nats, stream: S}",
    "s3-notifications": "{type: s3, queue_name: q}",
    "s3-poll": "{type: s3, mode: poll, bucket: b}",
    "files": "{type: files, path: ./inbox}",
    "schedule": "{type: schedule, expression: 'rate(1 minute)'}",
    "kinesis": "{type: kinesis, stream_name: s, starting_position: LATEST}",
    "dynamodb": "{type: dynamodb, table_name: t, starting_position: LATEST}",
}


def write(tmp: Path, source: str, pollers: str = "{minimum_pollers: 2, maximum_pollers: 2}", extra: str = "") -> Path:
    """A configuration with one mapping: `source` is a key of SOURCES or a source written out (line 5), and
    `pollers` its provisioned_poller_config (line 6)."""
    path = tmp / "hub.yaml"
    path.write_text(
        "functions:\n"
        "  f: {handler: functions.recorder.record}\n"
        "mappings:\n"
        "  - function: f\n"
        f"    source: {SOURCES.get(source, source)}\n"
        f"    provisioned_poller_config: {pollers}\n" + extra
    )
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    (error,) = caught.value.errors
    return error


@pytest.mark.parametrize("source", ["kafka", "sqs", "redis", "rabbitmq", "nats", "s3-notifications"])
def test_allowed_where_the_broker_shares_the_work(tmp_path: Path, source: str) -> None:
    (mapping,) = load_config(write(tmp_path, source, "{minimum_pollers: 3, maximum_pollers: 10}")).mappings
    assert mapping.shares_work
    assert mapping.pollers == 3
    assert mapping.provisioned_poller_config is not None
    assert mapping.provisioned_poller_config.maximum_pollers == 10


LEASED = ["files", "schedule", "kinesis", "dynamodb", "s3-poll"]


@pytest.mark.parametrize("source", LEASED)
def test_leased_sources_refused_on_a_store_of_one_process(tmp_path: Path, source: str) -> None:
    path = write(tmp_path, source)
    error = error_of(path)
    assert error.startswith(f"{path}:6:"), error
    assert "mappings[0].provisioned_poller_config: " in error
    assert "through leases in the checkpoint store, and sqlite is a store of one process" in error
    assert "use checkpoints: postgresql://... or redis://..." in error


@pytest.mark.parametrize("source", LEASED)
@pytest.mark.parametrize("store", ["redis://127.0.0.1:6379/0", "postgresql://postgres@127.0.0.1/hub"])
def test_leased_sources_accepted_on_a_shared_store(tmp_path: Path, source: str, store: str) -> None:
    path = write(tmp_path, source, "{minimum_pollers: 3}")
    path.write_text(f"checkpoints: {store}\n" + path.read_text())
    config = load_config(path, env={})
    (mapping,) = config.mappings
    assert mapping.leases is not None and not mapping.shares_work
    assert mapping.pollers == 3
    assert config.shared_store


def test_refused_where_neither_broker_nor_lease_shares(tmp_path: Path) -> None:
    path = write(tmp_path, "{type: http, path: /hook}")
    error = error_of(path)
    assert "provisioned_poller_config" in error, error


@pytest.mark.parametrize(
    ("pollers", "needle"),
    [
        (
            "{minimum_pollers: 0}",
            "minimum_pollers: Input should be greater than or equal to 1",
        ),
        (
            "{minimum_pollers: 201}",
            "minimum_pollers: Input should be less than or equal to 200",
        ),
        (
            "{maximum_pollers: 0}",
            "maximum_pollers: Input should be greater than or equal to 1",
        ),
        (
            "{minimum_pollers: 1, maximum_pollers: 2001}",
            "maximum_pollers: Input should be less than or equal to 2000",
        ),
        ("{minimum_pollers: 5, maximum_pollers: 4}", "maximum_pollers: 4 is less than minimum_pollers (5)"),
        ("{minimum_pollers: 2, autoscale: true}", "autoscale: unknown setting"),
        ("{minimum_pollers: two}", "minimum_pollers: Input should be a valid integer"),
    ],
)
def test_ranges_and_maximum_not_below_minimum(tmp_path: Path, pollers: str, needle: str) -> None:
    path = write(tmp_path, "kafka", pollers)
    error = error_of(path)
    assert error.startswith(f"{path}:6:"), error
    assert f"mappings[0].provisioned_poller_config.{needle}" in error


def test_maximum_below_minimum_points_at_the_maximum(tmp_path: Path) -> None:
    path = write(tmp_path, "sqs", "\n      minimum_pollers: 3\n      maximum_pollers: 2")
    error = error_of(path)
    assert error.startswith(f"{path}:8:"), error
    assert "mappings[0].provisioned_poller_config.maximum_pollers: 2 is less than minimum_pollers (3)" in error


def test_defaults_are_awss(tmp_path: Path) -> None:
    (mapping,) = load_config(write(tmp_path, "kafka", "{minimum_pollers: 150}")).mappings
    assert mapping.provisioned_poller_config is not None
    assert mapping.provisioned_poller_config.maximum_pollers == 200
    (mapping,) = load_config(write(tmp_path, "kafka", "{maximum_pollers: 5}")).mappings
    assert mapping.pollers == 1
    (mapping,) = load_config(write(tmp_path, "files", "null")).mappings
    assert mapping.pollers == 1 and mapping.provisioned_poller_config is None
    (mapping,) = load_config(write(tmp_path, "sqs", "{maximum_pollers: 5}")).mappings
    assert mapping.pollers == 2  # AWS's SQS minimum and default


def test_sqs_takes_two_pollers_at_least_as_on_aws(tmp_path: Path) -> None:
    path = write(tmp_path, "sqs", "{minimum_pollers: 1}")
    error = error_of(path)
    assert error.startswith(f"{path}:6:"), error
    assert (
        "mappings[0].provisioned_poller_config.minimum_pollers: sqs sources take 2 to 200 (as on AWS), not 1" in error
    )
    error = error_of(write(tmp_path, "sqs", "{maximum_pollers: 1}"))
    assert "maximum_pollers: 1 is less than minimum_pollers (2, the default)" in error


def test_a_third_party_connector_says_whether_its_broker_shares_the_work(tmp_path: Path) -> None:
    from connectors.sqs import CONNECTOR as SQS
    from hub import registry

    class MyQueueConfig(SQS.config):  # type: ignore[name-defined,misc]
        type: Literal["myqueue"]  # type: ignore[assignment]

    registry.register(
        dataclasses.replace(SQS, type="myqueue", config=MyQueueConfig, shares_work=False, minimum_pollers=1)
    )
    try:
        path = write(tmp_path, "{type: myqueue, queue_url: 'http://localhost:4566/000000000000/q'}")
        assert "does not apply to myqueue sources" in error_of(path)
        registry.register(
            dataclasses.replace(SQS, type="myqueue", config=MyQueueConfig, shares_work=True, minimum_pollers=1)
        )
        (mapping,) = load_config(path).mappings
        assert mapping.shares_work and mapping.pollers == 2
    finally:
        registry._registered.pop("myqueue", None)


def test_a_fixed_redis_consumer_name_is_refused_with_several_pollers(tmp_path: Path) -> None:
    named = "{type: redis, stream: s, consumer_name: worker}"
    path = write(tmp_path, named)
    error = error_of(path)
    assert error.startswith(f"{path}:5:"), error
    assert "mappings[0].source.consumer_name: with 2 pollers every process needs a consumer of its own" in error
    load_config(write(tmp_path, named, "{minimum_pollers: 1}"))  # one process: a fixed name is fine


def test_the_hub_starts_minimum_pollers_minus_one_children_per_enabled_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kafka",
        "{minimum_pollers: 3, maximum_pollers: 8}",
        "    name: a\n"
        f"  - {{name: b, function: f, source: {SOURCES['sqs']}, provisioned_poller_config: {{minimum_pollers: 2}}}}\n"
        f"  - {{name: c, function: f, enabled: false, source: {SOURCES['redis']},"
        " provisioned_poller_config: {minimum_pollers: 4}}\n"
        f"  - {{name: d, function: f, source: {SOURCES['rabbitmq']}}}\n",
    )
    config: HubConfig = load_config(path)
    pollers = Pollers(config, lambda mapping, index: ["true"])
    assert pollers.counts == {"a": 3, "b": 2}
    assert [(c.mapping, c.index) for c in pollers.children] == [("a", 2), ("a", 3), ("b", 2)]
    assert set(pollers.status()) == {"a", "b"}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_log_line_of_a_poller_carries_its_index(fmt: str) -> None:
    logs.setup("info", fmt)
    root = logging.getLogger()
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        logs.tag(poller=3)
        shared: dict[str, Any] = logs.fields(mapping="orders")
        logging.getLogger("hub.test").info("one", extra=shared)
        logging.getLogger("hub.test").warning("two")
        assert shared == {"fields": {"mapping": "orders"}}, "the caller's fields are not changed"
        first, second = stream.getvalue().splitlines()
        if fmt == "json":
            assert json.loads(first)["poller"] == 3 and json.loads(first)["mapping"] == "orders"
            assert json.loads(second)["poller"] == 3
        else:
            assert first.endswith("one  poller=3 mapping=orders") and second.endswith("two  poller=3")
    finally:
        logs.setup("info", "text")
