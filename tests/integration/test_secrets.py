"""Secrets never appear in logs, errors or status output, even when every broker is unreachable and every
connection fails (the moment error messages are most likely to echo a URL or a setting)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.helpers import HubProcess, run_cli, wait_for

SECRETS = ["kafka-s3cret-pw", "redis-s3cret-pw", "amqp-s3cret-pw", "aws-s3cret-key", "http-s3cret-token"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def config(tmp: Path) -> dict[str, object]:
    port = closed_port()
    aws = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "aws-s3cret-key",
        "connect_timeout": 0.5,
        "max_attempts": 1,
    }
    return {
        "checkpoints": "memory://",
        "shutdown_grace": "2s",
        "functions": {
            "f": {"handler": "functions.recorder.noop"},
            "web": {"runtime": "http", "url": f"http://127.0.0.1:{port}/x", "authorization_env": "TOKEN"},
        },
        "mappings": [
            {
                "name": "k",
                "function": "f",
                "source": {
                    "type": "kafka",
                    "bootstrap_servers": f"127.0.0.1:{port}",
                    "topic": "t",
                    "starting_position": "LATEST",
                    "security_protocol": "SASL_PLAINTEXT",
                    "sasl_mechanism": "PLAIN",
                    "sasl_username": "hub",
                    "sasl_password": "kafka-s3cret-pw",
                },
            },
            {
                "name": "r",
                "function": "f",
                "source": {"type": "redis", "url": f"redis://:redis-s3cret-pw@127.0.0.1:{port}/0", "stream": "s"},
            },
            {
                "name": "q",
                "function": "f",
                "source": {"type": "rabbitmq", "url": f"amqp://hub:amqp-s3cret-pw@127.0.0.1:{port}/", "queue": "q"},
            },
            {"name": "s", "function": "f", "source": {"type": "sqs", "queue_name": "jobs", "connection": aws}},
            {"name": "w", "function": "web", "source": {"type": "files", "path": str(tmp / "in")}},
        ],
    }


def test_no_secret_in_logs_while_every_connection_fails(tmp_path: Path) -> None:
    with HubProcess(tmp_path, config(tmp_path), {"TOKEN": "http-s3cret-token"}) as hub:
        hub.start()
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / "a.txt").write_text("x")  # the http function fails to connect, with its token set
        wait_for(lambda: hub.log().count("failed") >= 4, timeout=30, what="every source to fail at least once")
        wait_for(lambda: "Http.ConnectionError" in hub.log(), timeout=30, what="the http invocation to fail")
        assert hub.stop() == 0
        log = hub.log()
    for secret in SECRETS:
        assert secret not in log, secret


def test_no_secret_in_validation_output_or_errors(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "hub.yaml"
    good = config(tmp_path)
    path.write_text(yaml.safe_dump(good))
    result = run_cli("validate", str(path))
    assert result.returncode == 0
    bad = config(tmp_path)
    bad["mappings"][0]["source"]["sasl_password"] = ["kafka-s3cret-pw"]  # type: ignore[index]
    bad["mappings"][3]["source"]["connection"]["secret_access_key"] = {"x": "aws-s3cret-key"}  # type: ignore[index]
    path.write_text(yaml.safe_dump(bad))
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    for output in (result.stdout, result.stderr):
        for secret in SECRETS:
            assert secret not in output, secret
    schema = run_cli("schema")
    assert all(secret not in schema.stdout for secret in SECRETS)
