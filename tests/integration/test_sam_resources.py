"""`hub run template.yaml` creates the template's missing queues, streams and tables on the emulator (a real
moto_server), as a deploy would, before its mappings start: records put to each are delivered, a second start
leaves them as they are, an unreachable emulator exits 2 naming the template and the resource, and
`create_resources: false` creates nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fixtures_aws import boto, free_port, unique
from tests.helpers import ROOT, HubProcess, wait_for
from tests.integration.test_sam import SAM, bindings, drain

TEMPLATE = ROOT / "tests/sam/create-resources/template.yaml"


def attributes(url: str, name: str) -> dict[str, str]:
    sqs = boto(url, "sqs")
    queue = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    answer: dict[str, str] = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    return answer


def names(url: str, prefix: str) -> dict[str, Any]:
    """The queues, streams and tables on the emulator whose names start with `prefix`."""
    queues = boto(url, "sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    streams = boto(url, "kinesis").list_streams()["StreamNames"]
    tables = boto(url, "dynamodb").list_tables()["TableNames"]
    return {
        "queues": sorted(q.rsplit("/", 1)[-1] for q in queues),
        "streams": [s for s in streams if s.startswith(prefix)],
        "tables": sorted(t for t in tables if t.startswith(prefix)),
    }


def test_run_creates_the_missing_resources_delivers_from_each_and_leaves_them_on_a_second_start(
    tmp_path: Path, moto: str
) -> None:
    prefix = unique("made")
    env = {**bindings(tmp_path, moto), "HUB_SAM_PARAMETER_OVERRIDES": f"Prefix={prefix}"}
    with HubProcess(tmp_path, TEMPLATE, env) as hub:
        hub.start()
        # the SQS event has two pollers: the second, a process of its own, reads the template and creates nothing
        wait_for(lambda: hub.log().count("hub running") == 2, 30, "the second poller running")
        log = hub.log()
        assert log.count(f"queue {prefix}-jobs ") == 1 and log.count(f"stream {prefix}-clicks ") == 1
        for kind, name in (("queue", "jobs-dlq"), ("queue", "jobs"), ("queue", "seen"), ("stream", "clicks")):
            assert f"created {kind} {prefix}-{name} on {moto}" in log
        assert log.index(f"created queue {prefix}-jobs-dlq") < log.index(f"created queue {prefix}-jobs ")
        assert f"created table {prefix}-orders on {moto}" in log and f"created table {prefix}-sessions" in log
        assert "testing" not in log  # the bindings' credentials
        assert (tmp_path / "buckets" / f"{prefix}-uploads").is_dir()

        jobs, dlq = attributes(moto, f"{prefix}-jobs"), attributes(moto, f"{prefix}-jobs-dlq")
        assert json.loads(jobs["RedrivePolicy"]) == {"deadLetterTargetArn": dlq["QueueArn"], "maxReceiveCount": 3}
        assert (jobs["VisibilityTimeout"], jobs["MessageRetentionPeriod"]) == ("45", "86400")
        assert dlq["MessageRetentionPeriod"] == "1209600"
        stream = boto(moto, "kinesis").describe_stream_summary(StreamName=f"{prefix}-clicks")
        assert stream["StreamDescriptionSummary"]["OpenShardCount"] == 2
        table = boto(moto, "dynamodb").describe_table(TableName=f"{prefix}-orders")["Table"]
        assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        sessions = boto(moto, "dynamodb").describe_table(TableName=f"{prefix}-sessions")["Table"]
        assert sessions["KeySchema"] == [{"AttributeName": "session", "KeyType": "HASH"}]

        sqs = boto(moto, "sqs")
        sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=f"{prefix}-jobs")["QueueUrl"], MessageBody="job-1")
        boto(moto, "kinesis").put_record(StreamName=f"{prefix}-clicks", PartitionKey="k", Data=b"click-1")
        boto(moto, "dynamodb").put_item(TableName=f"{prefix}-orders", Item={"id": {"S": "order-1"}})
        seen = sqs.get_queue_url(QueueName=f"{prefix}-seen")["QueueUrl"]
        assert sorted(json.loads(b) for b in drain(moto, seen, 3)) == [
            ["aws:dynamodb", "order-1"],
            ["aws:kinesis", "click-1"],
            ["aws:sqs", "job-1"],
        ]
        assert hub.stop() == 0

    # changed behind the hub's back: a second start must leave every resource as it is now
    sqs.set_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=f"{prefix}-jobs")["QueueUrl"], Attributes={"VisibilityTimeout": "7"}
    )
    before = names(moto, prefix)
    with HubProcess(tmp_path, TEMPLATE, env) as hub:
        hub.start()
        log = hub.log()
        assert "created " not in log
        for kind, name in (("queue", "jobs"), ("queue", "jobs-dlq"), ("stream", "clicks"), ("table", "orders")):
            assert f"{kind} {prefix}-{name} exists on {moto}" in log
        assert attributes(moto, f"{prefix}-jobs")["VisibilityTimeout"] == "7"
        assert names(moto, prefix) == before
        item = boto(moto, "dynamodb").get_item(TableName=f"{prefix}-orders", Key={"id": {"S": "order-1"}})
        assert "Item" in item  # the same table, not a new one
        assert hub.stop() == 0


def test_hubs_started_together_agree_on_what_exists(tmp_path: Path, moto: str) -> None:
    prefix = unique("race")
    hubs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        env = {**bindings(tmp_path / name, moto), "HUB_SAM_PARAMETER_OVERRIDES": f"Prefix={prefix}"}
        hubs.append(HubProcess(tmp_path / name, TEMPLATE, env).start(ready=None))
    try:
        for hub in hubs:
            hub.wait_log("hub running", timeout=60)
        for kind, name in (("queue", "jobs"), ("queue", "jobs-dlq"), ("stream", "clicks"), ("table", "orders")):
            said = [
                f"created {kind} {prefix}-{name} on" in h.log() or f"{kind} {prefix}-{name} exists" in h.log()
                for h in hubs
            ]
            assert said == [True, True], (kind, name)
        assert names(moto, prefix)["queues"] == sorted(f"{prefix}-{q}" for q in ("jobs", "jobs-dlq", "seen"))
        for hub in hubs:
            assert hub.stop() == 0
    finally:
        for hub in hubs:
            hub.__exit__()


def test_an_unreachable_emulator_exits_2_naming_the_template_and_the_resource(tmp_path: Path) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    env = {**bindings(tmp_path, f"http://127.0.0.1:{free_port()}"), "HUB_SAM_PARAMETER_OVERRIDES": "Prefix=nowhere"}
    path = Path(env["HUB_SAM_BINDINGS"])
    settings = path.read_text().replace("secret_access_key: testing", f"secret_access_key: {secret}")
    path.write_text(settings)
    with HubProcess(tmp_path, TEMPLATE, env) as hub:
        hub.start(ready=None)
        assert hub.proc is not None
        assert hub.proc.wait(60) == 2
        out = hub.log()
    assert f"{TEMPLATE}:" in out and "(JobsDLQ)" in out and "cannot reach the AWS API emulator" in out
    assert "create_resources: false" in out and "resources not created" in out
    assert "Traceback" not in out and secret not in out
    assert "hub running" not in out


def test_create_resources_false_creates_nothing(tmp_path: Path, moto: str) -> None:
    prefix = unique("left")
    env = {**bindings(tmp_path, moto, create_resources=False), "HUB_SAM_PARAMETER_OVERRIDES": f"Prefix={prefix}"}
    with HubProcess(tmp_path, TEMPLATE, env) as hub:
        hub.start()
        assert "create_resources: false" in hub.log()
        assert names(moto, prefix) == {"queues": [], "streams": [], "tables": []}
        assert "made folder" not in hub.log()  # (the S3 endpoint makes the folders of the buckets it serves)
        assert hub.stop() == 0


def test_the_queues_sam_makes_for_a_schedules_dead_letters_are_created_and_take_the_failed_event(
    tmp_path: Path, moto: str
) -> None:
    tick, tock = unique("tick"), unique("tock")
    resources = {"ReportTickQueue": {"name": tick}, "TockDeadLetters": {"name": tock}}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=57)  # a fire within seconds
    overrides = f"Start={start:%Y-%m-%dT%H:%M:%SZ}"
    env = {**bindings(tmp_path, moto, resources=resources), "HUB_SAM_PARAMETER_OVERRIDES": overrides}
    with HubProcess(tmp_path, SAM / "schedule-made-dlq/template.yaml", env) as hub:
        hub.start()
        log = hub.log()
        assert f"created queue {tick} on {moto}" in log and f"created queue {tock} on {moto}" in log
        sqs = boto(moto, "sqs")
        queue = sqs.get_queue_url(QueueName=tock)["QueueUrl"]
        letters: list[dict[str, Any]] = []

        def dead_lettered() -> bool:
            letters.extend(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []))
            return bool(letters)

        wait_for(dead_lettered, 90, "the failed event in the queue SAM makes")
        event = json.loads(letters[0]["Body"])
        assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
        assert hub.stop() == 0
