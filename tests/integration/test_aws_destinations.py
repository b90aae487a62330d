"""The `sqs` and `s3` on-failure destinations against moto_server: in-process, and end to end behind a Kinesis
mapping whose function always fails."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.aws_destinations import (
    S3_DESTINATION,
    SQS_DESTINATION,
    S3DestinationConfig,
    SqsDestinationConfig,
    object_key,
)
from hub.source import Document
from tests.fixtures_aws import boto, connection, create_bucket, create_queue, create_stream, put_records, receive_all
from tests.helpers import HubProcess, wait_for

KEY = re.compile(
    r"^aws/lambda/(?P<esm>[^/]+)/(?P<shard>[^/]+)/\d{4}/\d{2}/\d{2}/\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}-[0-9a-f-]{36}$"
)


def failure(n: int, shard: str = "shardId-000000000001") -> dict[str, Any]:
    return {
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 1, "n": n},
        "version": "1.0",
        "timestamp": "2026-03-04T05:06:07.890Z",
        "KinesisBatchInfo": {"shardId": shard, "batchSize": 1},
    }


async def test_sqs_sends_every_document_in_batches_of_ten(moto: str) -> None:
    queue_url = create_queue(moto)
    name = queue_url.rsplit("/", 1)[-1]
    config = SqsDestinationConfig.model_validate({"type": "sqs", "queue_name": name, "connection": connection(moto)})
    destination = SQS_DESTINATION.build(config, "us-east-1")
    assert not destination.per_record and not destination.includes_payload
    await destination.send([Document(failure(i)) for i in range(23)])
    await destination.close()
    await destination.close()
    bodies = [json.loads(b) for b in receive_all(moto, queue_url, 23)]
    assert sorted(b["requestContext"]["n"] for b in bodies) == list(range(23))


async def test_sqs_raises_when_the_queue_refuses(moto: str) -> None:
    config = SqsDestinationConfig.model_validate(
        {"type": "sqs", "queue_url": f"{moto}/123456789012/no-such-queue", "connection": connection(moto)}
    )
    destination = SQS_DESTINATION.build(config, "us-east-1")
    with pytest.raises(Exception, match=r"(?i)queue"):
        await destination.send([Document(failure(1))])
    await destination.close()


def test_sqs_config_wants_a_url_or_a_name() -> None:
    with pytest.raises(ValidationError, match="exactly one of queue_url and queue_name"):
        SqsDestinationConfig.model_validate({"type": "sqs"})


async def test_s3_writes_one_object_per_document_under_aws_layout(moto: str) -> None:
    bucket = create_bucket(moto)
    config = S3DestinationConfig.model_validate(
        {"type": "s3", "bucket": bucket, "prefix": "dlq/", "connection": connection(moto)}
    )
    destination = S3_DESTINATION.build(config, "us-east-1")
    assert destination.includes_payload
    await destination.send([Document(failure(1), mapping="orders", lane="shardId-000000000001")])
    await destination.close()
    s3 = boto(moto, "s3")
    (item,) = s3.list_objects_v2(Bucket=bucket)["Contents"]
    key = item["Key"]
    assert key.startswith("dlq/aws/lambda/orders/shardId-000000000001/2026/03/04/2026-03-04T05.06.07-")
    assert KEY.match(key.removeprefix("dlq/"))
    body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert body == failure(1)


def test_object_keys_follow_aws_for_streams_and_asynchronous_invocations() -> None:
    stream = object_key(Document(failure(1, shard="shardId-000000000007"), mapping="m"))
    assert stream.startswith("aws/lambda/m/shardId-000000000007/2026/03/04/")
    asynchronous = {
        "requestContext": {"functionArn": "arn:aws:lambda:us-east-1:000000000000:function:resize:$LATEST"},
        "timestamp": "2026-03-04T05:06:07.890Z",
        "requestPayload": {"Records": []},
    }
    key = object_key(Document(asynchronous, mapping="uploads", lane="/srv/inbox"))
    assert key.startswith("aws/lambda/async/resize/2026/03/04/2026-03-04T05.06.07-")


# ---- end to end ----------------------------------------------------------------------------------------------


def failing_mapping(tmp: Path, url: str, stream: str, on_failure: dict[str, Any]) -> dict[str, Any]:
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": "functions.recorder.fail", "timeout": "10s"}},
        "mappings": [
            {
                "name": "orders",
                "function": "fn",
                "batch_size": 5,
                "maximum_retry_attempts": 1,
                "retry_delay": "10ms",
                "source": {
                    "type": "kinesis",
                    "stream_name": stream,
                    "starting_position": "TRIM_HORIZON",
                    "poll_interval": "20ms",
                    "connection": connection(url),
                },
                "destination_config": {"on_failure": {**on_failure, "connection": connection(url)}},
            }
        ],
    }


def test_a_given_up_kinesis_batch_reaches_the_sqs_queue(tmp_path: Path, moto: str) -> None:
    stream = create_stream(moto)
    queue_url = create_queue(moto)
    config = failing_mapping(tmp_path, moto, stream, {"type": "sqs", "queue_url": queue_url})
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(tmp_path / "calls.jsonl")}) as hub:
        hub.start()
        placed = put_records(moto, stream, [("k", b"%d" % i) for i in range(5)])
        (body,) = (json.loads(b) for b in receive_all(moto, queue_url, 1))
        assert hub.stop() == 0
    info = body["KinesisBatchInfo"]
    assert info["shardId"] == placed[0][0]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (placed[0][1], placed[-1][1])
    assert info["batchSize"] == 5
    assert info["streamArn"].endswith(f":stream/{stream}")
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 2
    assert "payload" not in body  # SQS gets metadata only, as on AWS


def test_a_given_up_kinesis_batch_reaches_the_s3_bucket_with_its_payload(tmp_path: Path, moto: str) -> None:
    stream = create_stream(moto)
    bucket = create_bucket(moto)
    config = failing_mapping(tmp_path, moto, stream, {"type": "s3", "bucket": bucket})
    s3 = boto(moto, "s3")
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(tmp_path / "calls.jsonl")}) as hub:
        hub.start()
        placed = put_records(moto, stream, [("k", b"%d" % i) for i in range(3)])
        (item,) = wait_for(lambda: s3.list_objects_v2(Bucket=bucket).get("Contents"), what="the failure object")
        assert hub.stop() == 0
    match = KEY.match(item["Key"])
    assert match and match["esm"] == "orders" and match["shard"] == placed[0][0]
    body = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    assert body["KinesisBatchInfo"]["batchSize"] == 3
    event = json.loads(body["payload"])  # the whole event, as an escaped JSON string
    assert [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]] == [b"0", b"1", b"2"]
