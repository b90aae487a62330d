"""Secrets never appear in logs, errors or status output, even when every broker is unreachable and every
connection fails (the moment error messages are most likely to echo a URL or a setting), when brokers refuse the
password, when a server echoes the Authorization header back, and when a function prints, logs and raises its own
credentials. Every output of the hub is read: its log in both formats at debug level, `/status`, `/metrics`, and
the errors of every CLI command."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
import yaml

from tests.fixtures_kafka import SaslBroker
from tests.fixtures_redis import RedisServer
from tests.helpers import ROOT, HubProcess, run_cli, wait_for

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


# ---- every output, with brokers that refuse the password ----------------------------------------------------------


def secret(what: str) -> str:
    return f"S3CR3T-{what}-{uuid.uuid4().hex}"


class EchoServer:
    """An HTTP server on loopback that answers every POST with 500 and the request's headers as its body, as a
    misbehaving debug endpoint would."""

    def __init__(self) -> None:
        class Echo(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                event = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                lines = sorted(f"{k}: {v}\n" for k, v in self.headers.items())
                lines.sort(key=lambda line: not line.startswith("Authorization"))  # first: within what is quoted
                body = "".join(lines).encode() + event
                self.send_response(500)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/invoke"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server whose password is none of the test's secrets: it refuses every login."""
    server = RedisServer(tmp_path).start()
    try:
        redis.Redis(port=server.port).config_set("requirepass", f"the-right-one-{uuid.uuid4().hex}")
        yield server
    finally:
        server.stop()


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def leaky_config(
    tmp: Path, secrets: dict[str, str], kafka: str, redis_port: int, echo_url: str, admin_port: int
) -> dict[str, object]:
    dead = closed_port()
    return {
        "checkpoints": "memory://",
        "shutdown_grace": "2s",
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "s3_endpoint": {"secret_access_key": secrets["endpoint"]},
        "functions": {
            # without `aws:` a function gets the S3 endpoint's credentials; with it, its own (its execution role)
            "leaky": {"handler": "functions.secrets_testing.leaks"},
            "leaky_role": {
                "handler": "functions.secrets_testing.leaks",
                "aws": {
                    "access_key_id": "AKIDROLE",
                    "secret_access_key": secrets["role"],
                    "session_token": secrets["session"],
                },
            },
            "web": {"runtime": "http", "url": echo_url, "authorization_env": "WEB_TOKEN"},
        },
        "mappings": [
            {
                "name": "k",
                "function": "leaky",
                "source": {
                    "type": "kafka",
                    "bootstrap_servers": kafka,
                    "topic": "t",
                    "starting_position": "LATEST",
                    "security_protocol": "SASL_PLAINTEXT",
                    "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_username": "hub-reader",
                    "sasl_password": secrets["kafka"],
                },
            },
            {
                "name": "r",
                "function": "leaky",
                "source": {
                    "type": "redis",
                    "url": f"redis://:{secrets['redis']}@127.0.0.1:{redis_port}/0",
                    "stream": "s",
                },
            },
            {
                "name": "q",
                "function": "leaky",
                "source": {"type": "rabbitmq", "url": f"amqp://hub:{secrets['amqp']}@127.0.0.1:{dead}/", "queue": "q"},
            },
            {
                "name": "s",
                "function": "leaky",
                "source": {
                    "type": "sqs",
                    "queue_name": "jobs",
                    "connection": {
                        "endpoint_url": f"http://127.0.0.1:{dead}",
                        "access_key_id": "AKIDSQS",
                        "secret_access_key": secrets["sqs"],
                        "connect_timeout": 0.5,
                        "max_attempts": 1,
                    },
                },
            },
            {"name": "plain", "function": "leaky", "source": {"type": "files", "path": str(tmp / "plain")}},
            {"name": "role", "function": "leaky_role", "source": {"type": "files", "path": str(tmp / "role")}},
            {"name": "w", "function": "web", "source": {"type": "files", "path": str(tmp / "web")}},
        ],
    }


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_in_any_output_of_a_running_hub(
    tmp_path: Path,
    log_format: str,
    sasl_kafka: SaslBroker,
    locked_redis: RedisServer,
    echo: EchoServer,
) -> None:
    secrets = {k: secret(k) for k in ("endpoint", "role", "session", "kafka", "redis", "amqp", "sqs", "token")}
    admin = closed_port()
    config = leaky_config(tmp_path, secrets, sasl_kafka.address, locked_redis.port, echo.url, admin)
    for folder in ("plain", "role", "web"):
        (tmp_path / folder).mkdir()
    with HubProcess(tmp_path, config, {"WEB_TOKEN": secrets["token"]}) as hub:
        hub.start("--log-level", "debug", "--log-format", log_format)
        for folder in ("plain", "role", "web"):
            (tmp_path / folder / "a.txt").write_text("x")

        def seen(text: str, times: int = 1) -> bool:
            return hub.log().count(text) >= times

        # each function prints, logs and raises its credentials, on every one of its 3 attempts
        wait_for(lambda: seen("leaking now", 6), timeout=60, what="both leaky functions to run 3 times each")
        wait_for(lambda: seen("Http.StatusError", 3), timeout=60, what="the http function to fail 3 times")
        wait_for(lambda: seen("gave up", 3), timeout=60, what="every files mapping to give up")
        base = f"http://127.0.0.1:{admin}"

        def last_errors() -> dict[str, str]:
            return {m["name"]: m["last_error"] or "" for m in json.loads(get(f"{base}/status"))["mappings"]}

        def every_broker_failed() -> dict[str, str] | None:
            errors = last_errors()
            return errors if all(errors[name] for name in ("k", "r", "q", "s")) else None

        errors = wait_for(every_broker_failed, timeout=60, what="every broker mapping to fail")
        pages = [get(f"{base}/status"), get(f"{base}/metrics")]
        assert hub.stop() == 0
        log = hub.log()
    # the brokers did refuse these passwords (they reached them, so an error could have quoted them)
    assert "WRONGPASS" in errors["r"] or "invalid" in errors["r"].lower(), errors["r"]
    assert "hub-reader" in errors["k"] and "SCRAM-SHA-512" in errors["k"], errors["k"]
    assert 'hub_mapping_up{mapping="r"} 0' in pages[1]
    # and what carried a secret was masked, not dropped
    assert "secret is ***" in log and "token is ***" in log
    assert "Authorization: ***" in log
    for value in secrets.values():
        assert value not in log, value
        for page in pages:
            assert value not in page, value
    if log_format == "json":
        for line in log.splitlines():
            assert isinstance(json.loads(line), dict), line  # masking kept every line valid JSON


def test_an_echoed_authorization_is_masked_and_the_body_cut(tmp_path: Path, echo: EchoServer) -> None:
    token = secret("token")
    path = tmp_path / "hub.yaml"
    config = {"functions": {"web": {"runtime": "http", "url": echo.url, "authorization_env": "WEB_TOKEN"}}}
    path.write_text(yaml.safe_dump(config))
    big = json.dumps({"padding": "p" * 5000})
    result = subprocess.run(
        [sys.executable, "-m", "hub", "invoke", "web", "--config", str(path), "--event", "-"],
        input=big,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "WEB_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    payload = json.loads(result.stdout)
    assert payload["errorType"] == "Http.StatusError"
    message = payload["errorMessage"]
    assert message.startswith(f"POST {echo.url} answered 500: Authorization: ***\n"), message
    cut = re.search(r"\.\.\. \((\d+) bytes in all\)$", message)
    assert cut and int(cut[1]) > len(big), message
    assert len(message) < 400  # not the 5000 characters the server sent
    assert token not in result.stdout and token not in result.stderr


def test_no_secret_in_the_errors_of_any_cli_command(
    tmp_path: Path, locked_redis: RedisServer, echo: EchoServer
) -> None:
    secrets = {k: secret(k) for k in ("checkpoints", "redis", "sqs", "role", "token")}
    path = tmp_path / "hub.yaml"
    config = {
        "checkpoints": f"redis://:{secrets['checkpoints']}@127.0.0.1:{locked_redis.port}/0",
        "shutdown_grace": "2s",
        "functions": {
            "f": {"handler": "functions.recorder.noop", "aws": {"secret_access_key": secrets["role"]}},
            "web": {"runtime": "http", "url": echo.url, "authorization_env": "WEB_TOKEN"},
        },
        "mappings": [
            {"name": "tick", "function": "f", "source": {"type": "schedule", "expression": "rate(1 minute)"}},
            {
                "name": "r",
                "function": "f",
                "source": {
                    "type": "redis",
                    "url": f"redis://:{secrets['redis']}@127.0.0.1:{locked_redis.port}/0",
                    "stream": "s",
                },
            },
            {
                "name": "s",
                "function": "f",
                "source": {
                    "type": "sqs",
                    "queue_name": "q",
                    "connection": {
                        "access_key_id": "AKIDSQS",
                        "secret_access_key": secrets["sqs"],
                        "endpoint_url": f"http://127.0.0.1:{closed_port()}",
                        "max_attempts": 1,
                    },
                },
            },
        ],
    }
    path.write_text(yaml.safe_dump(config))
    env = {"WEB_TOKEN": secrets["token"]}
    outputs: dict[str, str] = {}

    def cli(name: str, *args: str, code: int, stdin: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "hub", "--log-level", "debug", *args],
            input=stdin,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        outputs[name] = result.stdout + result.stderr
        assert result.returncode == code, outputs[name]
        assert "Traceback" not in outputs[name], outputs[name]
        return outputs[name]

    assert "valid: 2 functions, 3 mappings" in cli("validate", "validate", str(path), code=0)
    broken = json.loads(json.dumps(config))
    broken["mappings"][1]["source"]["password"] = secrets["redis"]  # given twice: in the URL and here
    broken["functions"]["f"]["aws"]["secret_access_key"] = [secrets["role"]]
    broken["checkpoints"] = f"nosql://:{secrets['checkpoints']}@127.0.0.1/0"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken))
    assert "given twice" in cli("invalid", "validate", str(bad), code=2)
    assert "configuration not valid" in cli("run-invalid", "run", str(bad), code=2)
    assert "Authorization: ***" in cli("invoke", "invoke", "web", "--config", str(path), code=1)
    assert "no function 'nope'" in cli("invoke-unknown", "invoke", "nope", "--config", str(path), code=2)
    assert "not valid JSON" in cli(
        "invoke-event", "invoke", "f", "--config", str(path), "--event", "-", stdin="{", code=2
    )
    assert "unknown source" in cli("events", "events", "nope", code=2)
    assert "invalid pattern" in cli("test-pattern", "test-pattern", "--pattern", '{"a": 1}', "--event", "{}", code=2)

    # a hub whose checkpoint store and redis source refuse the password, logging at debug level
    with HubProcess(tmp_path, path, env) as hub:
        hub.start("--log-level", "debug")
        wait_for(lambda: hub.log().count("invalid username-password pair") >= 4, timeout=60, what="refusals")
        wait_for(lambda: "EndpointConnectionError" in hub.log(), timeout=60, what="the sqs source to fail")
        assert hub.stop() == 0
        outputs["run"] = hub.log()
    assert "checkpoints=redis://:***@" in outputs["run"]
    for name, output in outputs.items():
        for value in secrets.values():
            assert value not in output, (name, value)
