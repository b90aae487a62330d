"""SAM templates of tests/sam/ run end to end with `hub run template.yaml`: real brokers, the handlers' code as
written for Lambda (never edited for the hub), the resources bound through a bindings file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures_aws import REGION, boto, unique
from tests.fixtures_kafka import create_topic, produce
from tests.helpers import ROOT, HubProcess, wait_for

SAM = ROOT / "tests/sam"
MOTO_ACCOUNT = "123456789012"
AMQP_URL = os.environ.get("HUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def bindings(tmp_path: Path, url: str, **more: Any) -> dict[str, str]:
    """The environment that hands `hub run` a bindings file for moto (and `more`) and parameter overrides."""
    path = tmp_path / "hub-bindings.yaml"
    settings = {
        "aws": {"endpoint_url": url, "region": REGION, "access_key_id": "testing", "secret_access_key": "testing"},
        "account_id": MOTO_ACCOUNT,
        **more,
    }
    path.write_text(yaml.safe_dump(settings))
    return {"HUB_SAM_BINDINGS": str(path)}


def test_sqs_partial_batch_template_runs_end_to_end(tmp_path: Path, moto: str) -> None:
    prefix = unique("orders")
    sqs = boto(moto, "sqs")
    queue = sqs.create_queue(QueueName=f"{prefix}-queue")["QueueUrl"]
    results = sqs.create_queue(QueueName=f"{prefix}-results")["QueueUrl"]
    env = {**bindings(tmp_path, moto), "HUB_SAM_PARAMETER_OVERRIDES": f"Prefix={prefix} Environment=prod"}
    with HubProcess(tmp_path, SAM / "sqs-partial-batch/template.yaml", env) as hub:
        hub.start()
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"id": "a", "items": [{"price": 2, "qty": 3}]}))
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"id": "b", "items": []}))
        got: list[Any] = []

        def answered() -> bool:
            for message in sqs.receive_message(QueueUrl=results, MaxNumberOfMessages=10).get("Messages", []):
                got.append(json.loads(message["Body"]))
            return bool(got)

        wait_for(answered, 30, "the handler's result on the results queue")
        assert got == [{"order": "a", "total": 6, "stage": "prod"}]
        # the order without items was reported as a batch item failure: it stays on the queue, not deleted
        wait_for(lambda: "ProcessOrdersFunction-OrdersEvent" in hub.log(), 10, "the mapping in the log")
        assert hub.stop() == 0
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (
        int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 1
    )


def drain(url: str, queue_url: str, count: int, timeout: float = 60.0) -> list[str]:
    """Receive (and delete) bodies from a queue until `count` have arrived."""
    sqs = boto(url, "sqs")
    bodies: list[str] = []

    def enough() -> bool:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(bodies) >= count

    wait_for(enough, timeout, f"{count} messages on {queue_url}", every=0.1)
    return bodies


def test_kinesis_bisect_template_sends_the_poison_record_to_the_on_failure_queue(
    tmp_path: Path,
    moto: str,
) -> None:
    prefix = unique("clicks")
    kinesis, sqs = boto(moto, "kinesis"), boto(moto, "sqs")
    kinesis.create_stream(StreamName=f"{prefix}-stream", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=f"{prefix}-stream", WaiterConfig={"Delay": 0.05})
    failures = sqs.create_queue(QueueName=f"{prefix}-failures")["QueueUrl"]
    output = sqs.create_queue(QueueName=f"{prefix}-output")["QueueUrl"]
    records = [{"page": "/a"}, {"page": "/b"}, {"oops": 1}, {"page": "/c"}]
    kinesis.put_records(
        StreamName=f"{prefix}-stream",
        Records=[{"PartitionKey": "k", "Data": json.dumps(r).encode()} for r in records],
    )
    env = {**bindings(tmp_path, moto), "HUB_SAM_PARAMETER_OVERRIDES": f"Prefix={prefix}"}
    with HubProcess(tmp_path, SAM / "kinesis-bisect/template.yaml", env) as hub:
        hub.start()
        (failure,) = [json.loads(b) for b in drain(moto, failures, 1)]
        assert failure["KinesisBatchInfo"]["batchSize"] == 1  # bisected down to the malformed record alone
        pages = drain(moto, output, 3)
        assert {"/a", "/b", "/c"} <= set(pages)
        assert hub.stop() == 0


def test_dynamodb_filter_template_invokes_only_for_matching_inserts(tmp_path: Path, moto: str) -> None:
    prefix = unique("shop")
    dynamodb, sqs = boto(moto, "dynamodb"), boto(moto, "sqs")
    dynamodb.create_table(
        TableName=f"{prefix}-orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    notify = sqs.create_queue(QueueName=f"{prefix}-notify")["QueueUrl"]
    for order, status in (("o1", "OLD"), ("o2", "NEW"), ("o3", "SHIPPED"), ("o4", "NEW")):
        dynamodb.put_item(TableName=f"{prefix}-orders", Item={"id": {"S": order}, "status": {"S": status}})
    env = {**bindings(tmp_path, moto), "HUB_SAM_PARAMETER_OVERRIDES": f"Prefix={prefix}"}
    with HubProcess(tmp_path, SAM / "dynamodb-filter/template.yaml", env) as hub:
        hub.start()
        assert sorted(drain(moto, notify, 2)) == ["o2", "o4"]
        # a marker put after the others arrives, and nothing filtered out arrived before it
        dynamodb.put_item(TableName=f"{prefix}-orders", Item={"id": {"S": "o5"}, "status": {"S": "NEW"}})
        assert drain(moto, notify, 1) == ["o5"]
        assert hub.stop() == 0


def test_s3_resize_template_reads_the_upload_and_writes_the_thumbnail_bucket(tmp_path: Path) -> None:
    env = {**bindings(tmp_path, "http://127.0.0.1:9"), "HUB_SAM_PARAMETER_OVERRIDES": ""}
    with HubProcess(tmp_path, SAM / "s3-resize/template.yaml", env) as hub:
        hub.start()
        uploads = tmp_path / "buckets/s3-resize-images"
        (uploads / "cat.jpg").write_bytes(b"JPEG" * 100)
        (uploads / "notes.txt").write_bytes(b"not an image")  # the suffix rule keeps it out
        thumb = tmp_path / "buckets/ThumbnailBucket/thumb-cat.jpg"
        wait_for(thumb.exists, 30, "the thumbnail")
        assert thumb.read_bytes() == (b"JPEG" * 100)[:16]
        assert hub.stop() == 0
    assert not (tmp_path / "buckets/ThumbnailBucket/thumb-notes.txt").exists()


def test_msk_filter_template_reads_the_topic_and_invokes_for_large_payments(
    tmp_path: Path,
    moto: str,
    tansu: str,
) -> None:
    topic = unique("payments")
    create_topic(tansu, topic)
    output = boto(moto, "sqs").create_queue(QueueName=f"{topic}-large")["QueueUrl"]
    payments = [
        (0, b"k", json.dumps({"id": f"p{n}", "amount": amount}).encode())
        for n, amount in enumerate([50, 150, 99, 1000])
    ]
    produce(tansu, topic, payments)
    env = {
        **bindings(tmp_path, moto, kafka={"bootstrap_servers": tansu}),
        "HUB_SAM_PARAMETER_OVERRIDES": f"Topic={topic}",
    }
    with HubProcess(tmp_path, SAM / "msk-filter/template.yaml", env) as hub:
        hub.start()
        assert sorted(drain(moto, output, 2)) == ["p1", "p3"]
        produce(tansu, topic, [(0, b"k", json.dumps({"id": "marker", "amount": 101}).encode())])
        assert drain(moto, output, 1) == ["marker"]  # nothing filtered out arrived before it
        assert hub.stop() == 0


def test_mq_template_consumes_the_rabbitmq_queue(tmp_path: Path, moto: str) -> None:
    import asyncio

    import aio_pika

    queue = unique("orders")
    output = boto(moto, "sqs").create_queue(QueueName=f"{queue}-out")["QueueUrl"]

    async def publish(bodies: list[str]) -> None:
        connection = await aio_pika.connect_robust(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(queue, durable=True)
            for body in bodies:
                await channel.default_exchange.publish(aio_pika.Message(body.encode()), routing_key=queue)

    asyncio.run(publish(["first", "second"]))
    env = {**bindings(tmp_path, moto, rabbitmq={"url": AMQP_URL}), "HUB_SAM_PARAMETER_OVERRIDES": f"QueueName={queue}"}
    try:
        with HubProcess(tmp_path, SAM / "mq-rabbit/template.yaml", env) as hub:
            hub.start()
            assert sorted(drain(moto, output, 2)) == ["first", "second"]
            assert hub.stop() == 0
    finally:

        async def delete() -> None:
            connection = await aio_pika.connect_robust(AMQP_URL)
            async with connection:
                await (await connection.channel()).queue_delete(queue)

        asyncio.run(delete())


def test_schedule_template_gives_a_failed_fire_to_its_dead_letter_queue(tmp_path: Path, moto: str) -> None:
    prefix = unique("reports")
    dlq = boto(moto, "sqs").create_queue(QueueName=f"{prefix}-dlq")["QueueUrl"]
    # no reports queue (the hub is told not to create it): the handler's SendMessage fails, so every fire fails and
    # goes to the dead-letter queue
    overrides = f"Prefix={prefix} 'NightlySchedule=rate(1 second)' Retries=0"
    env = {**bindings(tmp_path, moto, create_resources=False), "HUB_SAM_PARAMETER_OVERRIDES": overrides}
    with HubProcess(tmp_path, SAM / "schedule-dlq/template.yaml", env) as hub:
        hub.start()
        (letter, *_) = drain(moto, dlq, 1)
        assert json.loads(letter) == {"report": "daily"}  # the schedule's Input, as the target received it
        assert hub.stop() == 0


def get(url: str) -> tuple[int, dict[str, Any]]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def serve(tmp_path: Path, template: str, **more: Any) -> tuple[HubProcess, str]:
    from tests.fixtures_aws import free_port

    port = free_port()
    env = {**bindings(tmp_path, "http://127.0.0.1:9", http_server={"listen": f"127.0.0.1:{port}"}, **more)}
    env["HUB_SAM_PARAMETER_OVERRIDES"] = ""
    return HubProcess(tmp_path, SAM / template / "template.yaml", env), f"http://127.0.0.1:{port}"


def test_http_api_template_serves_its_route_with_path_parameters(tmp_path: Path) -> None:
    hub, url = serve(tmp_path, "http-api-path")
    with hub:
        hub.start()
        status, body = get(f"{url}/orders/42?expand=items")
        assert status == 200
        assert body["version"] == "2.0" and body["routeKey"] == "GET /orders/{id}"
        assert body["pathParameters"] == {"id": "42"} and body["query"] == {"expand": "items"}
        assert body["function"] == "GetOrder"
        assert hub.stop() == 0


def test_rest_api_template_serves_a_proxy_route_for_any_method(tmp_path: Path) -> None:
    hub, url = serve(tmp_path, "rest-proxy")
    with hub:
        hub.start()
        status, body = get(f"{url}/a/b/c")
        assert status == 200
        assert body["version"] == "1.0" and body["routeKey"] == "/{proxy+}" and body["method"] == "GET"
        assert body["pathParameters"] == {"proxy": "a/b/c"}
        assert hub.stop() == 0


def test_function_url_template_gives_each_function_a_url_of_its_own(tmp_path: Path) -> None:
    from tests.fixtures_aws import free_port

    ports = {"Hello": free_port(), "Goodbye": free_port()}
    resources = {name: {"listen": f"127.0.0.1:{port}"} for name, port in ports.items()}
    hub, _ = serve(tmp_path, "function-url", resources=resources)
    with hub:
        hub.start()
        for name, port in ports.items():
            status, body = get(f"http://127.0.0.1:{port}/anything/here")
            assert status == 200
            assert body["version"] == "2.0" and body["routeKey"] == "$default" and body["path"] == "/anything/here"
            assert body["function"] == name
        assert get(f"http://127.0.0.1:{ports['Hello']}/")[1]["path"] == "/"  # a URL answers its root too
        assert hub.stop() == 0
