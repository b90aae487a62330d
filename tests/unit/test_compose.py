"""docker-compose.yml cannot run here (no Docker engine), so it is checked as far as can be without one."""

import re

import yaml

from hub.config import load_config
from tests.helpers import ROOT


def test_compose_file_is_consistent() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"hub", "kafka", "redis", "aws", "aws-init"} <= set(services)
    hub = services["hub"]
    assert (ROOT / hub["build"] / "Dockerfile").is_file()
    for dependency in hub["depends_on"]:
        assert dependency in services
    config_path = hub["command"][-1]
    env = {k: str(v) for k, v in hub["environment"].items()}
    config = load_config(ROOT / config_path, env=env)
    types = {m.source.type for m in config.mappings}
    assert {"files", "schedule", "kafka", "sqs", "kinesis", "redis"} <= types
    # every AWS resource a mapping names is created by aws-init
    init = " ".join(services["aws-init"]["command"])
    for mapping in config.mappings:
        name = getattr(mapping.source, "queue_name", None) or getattr(mapping.source, "stream_name", None)
        if name:
            assert f"--queue-name {name}" in init or f"--stream-name {name}" in init, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / copied).exists(), copied
