"""The `redis` on-failure destination and dead-letter queue against a real redis-server: in-process, behind a
Kinesis mapping whose function always fails, and as a function's dead-letter queue."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from connectors.redis_streams.destination import DESTINATION, RedisDestinationConfig
from hub.source import Document
from tests.fixtures_aws import create_stream, put_records
from tests.helpers import HubProcess, wait_for
from tests.integration.test_aws_destinations import failing_mapping, failure


def entries(url: str, stream: str) -> list[dict[str, str]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [fields for _, fields in client.xrange(stream)]
    finally:
        client.close()


async def test_every_document_is_one_entry_with_its_mapping_and_lane(redis_url: str) -> None:
    stream = f"failures-{id(object())}"
    config = RedisDestinationConfig.model_validate({"type": "redis", "url": redis_url, "stream": stream})
    destination = DESTINATION.build(config, "us-east-1")
    assert not destination.per_record and destination.includes_payload
    await destination.send([Document(failure(i), mapping="orders", lane=f"shard-{i}") for i in range(12)])
    await destination.close()
    await destination.close()
    got = entries(redis_url, stream)
    assert [json.loads(e["body"])["requestContext"]["n"] for e in got] == list(range(12))
    assert {e["mapping"] for e in got} == {"orders"} and got[3]["lane"] == "shard-3"
    assert "attributes" not in got[0]


async def test_a_dead_letter_keeps_its_attributes_and_maxlen_trims(redis_url: str) -> None:
    stream = f"dlq-{id(object())}"
    config = RedisDestinationConfig.model_validate({"type": "redis", "url": redis_url, "stream": stream, "maxlen": 5})
    destination = DESTINATION.build(config, "us-east-1")
    attributes = {"ERROR_CODE": {"DataType": "String", "StringValue": "Unhandled"}}
    for i in range(300):
        await destination.send([Document({"n": i}, attributes=attributes)])
    await destination.close()
    got = entries(redis_url, stream)
    assert 5 <= len(got) < 300  # MAXLEN ~ trims by whole nodes: about 5, never everything
    assert json.loads(got[-1]["body"]) == {"n": 299}
    assert json.loads(got[-1]["attributes"]) == attributes


async def test_a_refused_send_raises_and_the_next_one_reconnects(redis_url: str) -> None:
    config = RedisDestinationConfig.model_validate({"type": "redis", "url": "redis://127.0.0.1:1/0", "stream": "s"})
    destination = DESTINATION.build(config, "us-east-1")
    with pytest.raises(redis.exceptions.ConnectionError):
        await destination.send([Document({"n": 1})])
    await destination.close()


def test_the_password_is_given_once() -> None:
    with pytest.raises(ValidationError, match="given twice"):
        RedisDestinationConfig.model_validate(
            {"type": "redis", "url": "redis://:a@localhost/0", "password": "b", "stream": "s"}
        )


def test_a_given_up_kinesis_batch_reaches_the_stream_with_its_payload(
    tmp_path: Path,
    moto: str,
    redis_url: str,
) -> None:
    stream = create_stream(moto)
    failures = f"failures-{stream}"
    config = failing_mapping(tmp_path, moto, stream, {"type": "redis", "url": redis_url, "stream": failures})
    config["mappings"][0]["destination_config"]["on_failure"].pop("connection")
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(tmp_path / "calls.jsonl")}) as hub:
        hub.start()
        placed = put_records(moto, stream, [("k", b"%d" % i) for i in range(3)])
        (entry,) = wait_for(lambda: entries(redis_url, failures), what="the failure record")
        assert hub.stop() == 0
    body: dict[str, Any] = json.loads(entry["body"])
    assert entry["mapping"] == "orders" and entry["lane"] == placed[0][0]
    info = body["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (placed[0][1], placed[-1][1])
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    event = json.loads(body["payload"])  # the whole event, as the S3 and Kafka destinations carry it
    assert [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]] == [b"0", b"1", b"2"]
