"""Secret collection from configurations and masking (hub/redact.py): pure logic."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hub.config import load_config
from hub.redact import MASK, Redactor, secrets_in, secrets_of, url_passwords

CONFIG = {
    "checkpoints": "redis://:ckpt%40pw@127.0.0.1:6379/0",
    "s3_endpoint": {"secret_access_key": "endpoint-secret"},
    "function_defaults": {"aws": {"secret_access_key": "default-secret"}},
    "functions": {
        "f": {"handler": "functions.recorder.noop", "aws": {"access_key_id": "AKIDROLE", "session_token": "tok"}},
        "web": {
            "runtime": "http",
            "url": "http://127.0.0.1:1/x",
            "authorization_env": "WEB_TOKEN",
            "headers": {"X-Api-Key": "header-key", "X-Trace": "not-a-secret"},
        },
    },
    "mappings": [
        {
            "function": "f",
            "source": {
                "type": "kafka",
                "bootstrap_servers": "127.0.0.1:1",
                "topic": "t",
                "starting_position": "LATEST",
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "hub",
                "sasl_password": "kafka-pw",
            },
        },
        {"function": "f", "source": {"type": "redis", "url": "redis://:redis-pw@127.0.0.1:1/0", "stream": "s"}},
        {
            "function": "f",
            "source": {"type": "rabbitmq", "url": "amqp://127.0.0.1:1/", "password": "amqp-pw", "queue": "q"},
        },
        {
            "function": "f",
            "source": {"type": "sqs", "queue_name": "q", "connection": {"secret_access_key": "sqs-secret"}},
        },
        {"function": "f", "source": {"type": "nats", "stream": "S", "token": "nats-token"}},
    ],
}
EXPECTED = {
    "ckpt%40pw",
    "ckpt@pw",
    "endpoint-secret",
    "default-secret",
    "AKIDROLE",
    "tok",
    "web-token-value",
    "header-key",
    "kafka-pw",
    "redis-pw",
    "amqp-pw",
    "sqs-secret",
    "nats-token",
}


def test_every_secret_of_a_validated_configuration_is_found(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    config = load_config(path)
    assert secrets_of(config, {"WEB_TOKEN": "web-token-value"}) == EXPECTED


def test_the_secrets_of_a_document_that_does_not_validate_are_found_by_name() -> None:
    document = json.loads(json.dumps(CONFIG))
    document["mappings"][0]["source"]["sasl_password"] = 12345  # wrong type: no SecretStr to go by
    document["functions"]["f"]["aws"]["secret_access_key"] = "role-secret"
    found = secrets_in(document, {"WEB_TOKEN": "web-token-value"})
    assert {"12345", "role-secret", "ckpt@pw", "redis-pw", "web-token-value", "header-key", "sqs-secret"} <= found
    assert "not-a-secret" not in found and "hub" not in found and "q" not in found


def test_url_passwords() -> None:
    assert url_passwords("rediss://user:p%3Aw@host:6380/0") == {"p%3Aw", "p:w"}
    assert url_passwords("redis://host:6379/0") == set()
    assert url_passwords("no url @ all") == set()
    assert url_passwords("http://[broken@") == set()


def test_every_form_of_a_secret_is_masked() -> None:
    redactor = Redactor(['pa"ss word/é'])
    line = 'raw pa"ss word/é quoted pa%22ss%20word%2F%C3%A9 json pa\\"ss word/\\u00e9 repr \'pa"ss word/é\''
    masked = redactor.text(line)
    assert "pa" not in masked.replace("repr", ""), masked
    assert masked.count(MASK) == 4


def test_a_secret_inside_a_longer_one_is_masked_whole() -> None:
    redactor = Redactor(["abc", "xxabcxx"])
    assert redactor.text("1 xxabcxx 2 abc") == "1 *** 2 ***"


def test_text_without_a_secret_is_returned_as_is() -> None:
    redactor = Redactor(["s3cret"])
    line = "nothing to see"
    assert redactor.text(line) is line
    assert Redactor().text(line) is line
    assert not Redactor([""])


def test_data_is_masked_in_values_and_keys_and_stays_json() -> None:
    redactor = Redactor(['s"3'])
    masked = redactor.data({"k": ['a s"3', 1, None, True], 's"3': {"n": 2.5}, "obj": Path('/x/s"3')})
    assert masked == {"k": ["a ***", 1, None, True], "***": {"n": 2.5}, "obj": "/x/***"}
    json.dumps(masked)


def test_a_short_secret_is_masked_as_a_token_not_in_every_word() -> None:
    redactor = Redactor(["e", "pw"])
    assert redactor.text("mappings[0].source: password e refused") == "mappings[0].source: password *** refused"
    assert (
        redactor.text("redis://:pw@host:6379 answered: wrong password")
        == "redis://:***@host:6379 answered: wrong password"
    )
    assert redactor.text("e") == "***"
    assert redactor.text("every pwd here") == "every pwd here"
