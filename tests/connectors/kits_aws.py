"""The kits of the AWS connectors, against moto_server (tests.fixtures_aws): `sqs`, `kinesis`, `dynamodb` and `s3`
(event notifications). A cuttable resource is reached through a TcpProxy in front of moto, with short client
timeouts and no retries so that a cut shows at once."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from tests.connectors.kit import Kit, Resource, unique
from tests.fixtures_aws import boto, connection, create_bucket, create_stream, create_table, put_records
from tests.helpers import TcpProxy


class AwsKit(Kit):
    """What the AWS kits share: moto's URL, and a proxy in front of it for a cuttable resource."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.proxies: list[TcpProxy] = []

    def endpoint(self, cuttable: bool) -> dict[str, Any]:
        if not cuttable:
            return {"endpoint": self.url}
        proxy = TcpProxy(int(self.url.rsplit(":", 1)[1]))
        self.proxies.append(proxy)
        return {"endpoint": f"http://{proxy.url_host}", "proxy": proxy}

    @staticmethod
    def connection(resource: Resource) -> dict[str, Any]:
        settings = connection(resource.extra["endpoint"])
        if "proxy" in resource.extra:
            settings.update(connect_timeout=1, read_timeout=3, max_attempts=1)
        return settings

    def cut(self, resource: Resource) -> None:
        resource.extra["proxy"].cut()

    def restore(self, resource: Resource) -> None:
        resource.extra["proxy"].restore()

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()


def depth(url: str, queue: str) -> int:
    """Messages of an SQS queue not deleted yet: visible or in flight."""
    sqs = boto(url, "sqs")
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"], AttributeNames=names)
    return sum(int(attributes["Attributes"][name]) for name in names)


QUEUE_SETTINGS = {"wait_time": 1, "visibility_timeout": 2, "visibility_backoff": 0}
"""Long polls of a second; a message read and never settled comes back after 2 s, a failed one at once."""


class SqsKit(AwsKit):
    """A standard queue; record n is the message `{"n": n}`."""

    type = "sqs"
    counts_deliveries = True
    mapping = {"max_concurrency": 2}

    def fresh(self, cuttable: bool = False) -> Resource:
        name = unique("queue")
        boto(self.url, "sqs").create_queue(QueueName=name)
        return Resource(name, self.endpoint(cuttable))

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        sqs = boto(self.url, "sqs")
        queue = sqs.get_queue_url(QueueName=resource.name)["QueueUrl"]
        bodies = [json.dumps({"n": n}) for n in numbers]
        for i in range(0, len(bodies), 10):
            entries = [{"Id": str(j), "MessageBody": body} for j, body in enumerate(bodies[i : i + 10])]
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [(r["eventSourceARN"], json.loads(r["body"])["n"]) for r in event["Records"]]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {"type": "sqs", "queue_name": resource.name, "connection": self.connection(resource), **QUEUE_SETTINGS}

    def leftover(self, resource: Resource) -> int:
        return depth(self.url, resource.name)


class KinesisKit(AwsKit):
    """A stream of two shards; record n has the partition key `pN`."""

    type = "kinesis"
    ordered = True
    lanes = 2

    def fresh(self, cuttable: bool = False) -> Resource:
        return Resource(create_stream(self.url, shards=self.lanes), self.endpoint(cuttable))

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        put_records(self.url, resource.name, [(f"p{n}", json.dumps({"n": n}).encode()) for n in numbers])

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [
            (r["eventID"].split(":")[0], json.loads(base64.b64decode(r["kinesis"]["data"]))["n"])
            for r in event["Records"]
        ]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {
            "type": "kinesis",
            "stream_name": resource.name,
            "starting_position": "TRIM_HORIZON",
            "poll_interval": "20ms",
            "shard_discovery_interval": "100ms",
            "connection": self.connection(resource),
        }


class DynamoDBKit(AwsKit):
    """A table's stream (one shard); record n is the insert of the item `item-N` with `n: N`."""

    type = "dynamodb"
    ordered = True

    def fresh(self, cuttable: bool = False) -> Resource:
        return Resource(create_table(self.url), self.endpoint(cuttable))

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        dynamodb = boto(self.url, "dynamodb")
        for n in numbers:
            dynamodb.put_item(TableName=resource.name, Item={"id": {"S": f"item-{n}"}, "n": {"N": str(n)}})

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [(r["eventSourceARN"], int(r["dynamodb"]["NewImage"]["n"]["N"])) for r in event["Records"]]

    def source(self, resource: Resource) -> dict[str, Any]:
        return {
            "type": "dynamodb",
            "table_name": resource.name,
            "starting_position": "TRIM_HORIZON",
            "poll_interval": "20ms",
            "shard_discovery_interval": "100ms",
            "connection": self.connection(resource),
        }


class S3Kit(AwsKit):
    """A bucket whose ObjectCreated notifications go to a queue; record n is the object `obj-NNNNN`."""

    type = "s3"
    batched = False
    counts_deliveries = True
    mapping = {"max_concurrency": 4}
    kill_records = 40

    def fresh(self, cuttable: bool = False) -> Resource:
        s3, sqs = boto(self.url, "s3"), boto(self.url, "sqs")
        bucket, queue = create_bucket(self.url), unique("queue")
        url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
        )
        return Resource(bucket, {"queue": queue, **self.endpoint(cuttable)})

    def produce(self, resource: Resource, numbers: Iterable[int]) -> None:
        s3 = boto(self.url, "s3")
        for n in numbers:
            s3.put_object(Bucket=resource.name, Key=f"obj-{n:05d}", Body=b"%d" % n)

    def numbers(self, event: Any) -> list[tuple[str, int]]:
        return [(r["s3"]["bucket"]["name"], int(r["s3"]["object"]["key"][4:])) for r in event["Records"]]

    def source(self, resource: Resource) -> dict[str, Any]:
        queue = resource.extra["queue"]
        return {"type": "s3", "queue_name": queue, "connection": self.connection(resource), **QUEUE_SETTINGS}

    def leftover(self, resource: Resource) -> int:
        return depth(self.url, resource.extra["queue"])
