"""An AWS API server for the tests: moto_server on a free loopback port (Kinesis, DynamoDB + Streams, SQS, S3),
and helpers that make uniquely named streams, tables, queues and buckets on it.

`moto` is the plain server, shared by the session (every resource name is unique per test). `moto_resharding`
is the same server with Kinesis resharding made AWS-faithful: moto's SplitShard and MergeShards move the
parent's records into the children and keep routing new records to the closed parent, and a closed shard
never ends (its GetRecords always has a NextShardIterator). On AWS the parent keeps its records, new records
go to the children only, and the end of a closed shard answers without a NextShardIterator. Run as
`python -m tests.fixtures_aws -p PORT`, this module serves that patched server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, wait_for

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _serve(command: list[str]) -> Iterator[str]:
    """Start `command -H 127.0.0.1 -p PORT` on a free port (again on another port if that one was taken)."""
    for _ in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*command, "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **CREDENTIALS},
            )
        try:

            def up(proc: subprocess.Popen[bytes] = proc, url: str = url) -> bool:
                return proc.poll() is not None or _answers(url)

            wait_for(up, timeout=30, what=f"moto_server on {url}", every=0.05)
            if proc.poll() is not None:
                continue  # the port was taken between our probe and the server binding it
            yield url
            return
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    raise RuntimeError(f"moto_server did not start; see {log_path}")


@pytest.fixture(scope="session")
def moto() -> Iterator[str]:
    """The endpoint URL of a moto_server that lives as long as the test session."""
    server = Path(sys.executable).with_name("moto_server")
    yield from _serve([str(server)] if server.exists() else [sys.executable, "-m", "moto.server"])


@pytest.fixture(scope="session")
def moto_resharding() -> Iterator[str]:
    """A moto_server whose Kinesis resharding behaves as AWS's does (see the module docstring)."""
    yield from _serve([sys.executable, "-m", "tests.fixtures_aws"])


# ---- resources ---------------------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def connection(url: str) -> dict[str, Any]:
    """The `connection:` settings of a source or destination that talks to this server."""
    return {"endpoint_url": url, "region": REGION, "access_key_id": "testing", "secret_access_key": "testing"}


def boto(url: str, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_stream(url: str, shards: int = 1) -> str:
    name = unique("stream")
    kinesis = boto(url, "kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 200})
    return name


def put_records(url: str, stream: str, items: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """Put (partition key, data) pairs in order (PutRecords, 500 at a time); return their (shard id, sequence
    number)."""
    kinesis = boto(url, "kinesis")
    out: list[tuple[str, str]] = []
    for start in range(0, len(items), 500):
        chunk = [{"PartitionKey": key, "Data": data} for key, data in items[start : start + 500]]
        answer = kinesis.put_records(StreamName=stream, Records=chunk)
        assert not answer.get("FailedRecordCount"), answer
        out.extend((r["ShardId"], r["SequenceNumber"]) for r in answer["Records"])
    return out


def create_table(url: str, view: str = "NEW_AND_OLD_IMAGES") -> str:
    name = unique("table")
    boto(url, "dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    return name


def create_queue(url: str) -> str:
    return str(boto(url, "sqs").create_queue(QueueName=unique("queue"))["QueueUrl"])


def receive_all(url: str, queue_url: str, count: int, timeout: float = 20.0) -> list[Any]:
    """Receive (and delete) messages until `count` have arrived; return their bodies."""
    sqs = boto(url, "sqs")
    bodies: list[Any] = []

    def enough() -> bool:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in answer.get("Messages", []):
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(bodies) >= count

    wait_for(enough, timeout, f"{count} messages on {queue_url}", every=0.05)
    return bodies


def create_bucket(url: str) -> str:
    name = unique("bucket")
    boto(url, "s3").create_bucket(Bucket=name)
    return name


# ---- AWS-faithful Kinesis resharding for moto (used by `moto_resharding`) ---------------------------------------


def _patch_moto_resharding() -> None:
    from moto.kinesis import models
    from moto.kinesis.exceptions import InvalidArgumentError
    from moto.kinesis.utils import compose_shard_iterator, decompose_shard_iterator

    def get_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
        open_shards = {k: s for k, s in self.shards.items() if s.is_open}
        everything, self.shards = self.shards, open_shards
        try:
            return original_for_key(self, partition_key, explicit_hash_key)
        finally:
            self.shards = everything

    def split_shard(self: Any, shard_to_split: str, new_starting_hash_key: str) -> None:
        shard = self.shards[shard_to_split]
        new_start = int(new_starting_hash_key)
        if not (shard.is_open and shard.starting_hash < new_start < shard.ending_hash):
            raise InvalidArgumentError(message=f"cannot split {shard_to_split} at {new_start}")
        last = max(s._shard_id for s in self.shards.values())
        for index, (low, high) in enumerate([(shard.starting_hash, new_start - 1), (new_start, shard.ending_hash)]):
            child = models.Shard(last + 1 + index, low, high, parent=shard.shard_id)
            self.shards[child.shard_id] = child
        shard.is_open = False  # the parent keeps its records

    def merge_shards(self: Any, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        first, second = self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]
        last = max(s._shard_id for s in self.shards.values())
        child = models.Shard(
            last + 1,
            min(first.starting_hash, second.starting_hash),
            max(first.ending_hash, second.ending_hash),
            parent=first.shard_id,
            adjacent_parent=second.shard_id,
        )
        self.shards[child.shard_id] = child
        first.is_open = second.is_open = False

    def get_records(self: Any, stream_arn: str | None, shard_iterator: str, limit: int | None) -> Any:
        next_iterator, records, millis = original_get_records(self, stream_arn, shard_iterator, limit)
        stream_name, shard_id, last = decompose_shard_iterator(next_iterator)
        shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(shard_id)
        position = int(last)
        if not shard.is_open and position >= shard.get_max_sequence_number():
            return None, records, millis  # the end of a closed shard
        return compose_shard_iterator(stream_name, shard, position), records, millis

    original_for_key = models.Stream.get_shard_for_key
    original_get_records = models.KinesisBackend.get_records
    models.Stream.get_shard_for_key = get_shard_for_key  # type: ignore[method-assign]
    models.Stream.split_shard = split_shard  # type: ignore[method-assign]
    models.Stream.merge_shards = merge_shards  # type: ignore[method-assign]
    models.KinesisBackend.get_records = get_records  # type: ignore[method-assign]


if __name__ == "__main__":
    _patch_moto_resharding()
    from moto.server import main

    main(sys.argv[1:])
