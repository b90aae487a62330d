"""What `hub run TEMPLATE` creates on the emulator (hub/sam/resources.py plan): each queue, stream, table and
bucket of the template with the properties that matter locally, dead-letter queues first; and what it refuses to
create (file, line, logical id, exit 2), which `hub validate` reports without contacting anything."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest

from hub.sam.resources import plan, prepare
from hub.sam.translate import SamLocated, translate
from hub.yamlsource import ConfigError
from tests.helpers import ROOT, run_cli

HEAD = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Resources:
"""
FUNCTION = """\
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Events:
        Changes:
          Type: DynamoDB
          Properties: {Stream: !GetAtt Plain.StreamArn, StartingPosition: LATEST}
"""


def template(tmp_path: Path, *resources: str, bindings: str = "") -> SamLocated:
    path = tmp_path / "template.yaml"
    path.write_text(HEAD + "".join(textwrap.indent(textwrap.dedent(r), "  ") for r in resources) + FUNCTION)
    if bindings:
        (tmp_path / "hub-bindings.yaml").write_text(bindings)
    document = translate(path)
    assert isinstance(document, SamLocated)
    return document


PLAIN_TABLE = """\
Plain:
  Type: AWS::DynamoDB::Table
  Properties:
    AttributeDefinitions: [{AttributeName: pk, AttributeType: S}, {AttributeName: sk, AttributeType: N}]
    KeySchema: [{AttributeName: pk, KeyType: HASH}, {AttributeName: sk, KeyType: RANGE}]
    ProvisionedThroughput: {ReadCapacityUnits: "5", WriteCapacityUnits: 2}
"""


def test_the_corpus_template_plans_every_resource_with_its_local_properties() -> None:
    document = translate(ROOT / "tests/sam/create-resources/template.yaml", {"Prefix": "p"})
    assert isinstance(document, SamLocated)
    wanted = {item.logical_id: item for item in plan(document)}
    order = [item.logical_id for item in plan(document)]
    assert order.index("JobsDLQ") < order.index("JobsQueue")
    jobs = wanted["JobsQueue"]
    assert jobs.arguments == {
        "QueueName": "p-jobs",
        "Attributes": {"VisibilityTimeout": "45", "MessageRetentionPeriod": "86400"},
    }
    assert (jobs.dead_letter, jobs.redrive and jobs.redrive["maxReceiveCount"]) == ("p-jobs-dlq", 3)
    assert wanted["Clicks"].arguments == {"StreamName": "p-clicks", "ShardCount": 2}
    orders = wanted["Orders"].arguments
    assert orders["BillingMode"] == "PAY_PER_REQUEST" and "ProvisionedThroughput" not in orders
    assert orders["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert wanted["Orders"].stream_needed
    assert wanted["Sessions"].arguments == {
        "TableName": "p-sessions",
        "KeySchema": [{"AttributeName": "session", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "session", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    assert (wanted["Uploads"].kind, wanted["Uploads"].name) == ("bucket", "buckets/p-uploads")


def test_a_table_read_by_a_dynamodb_event_gets_a_stream_and_provisioned_throughput_as_numbers(tmp_path: Path) -> None:
    (table,) = plan(template(tmp_path, PLAIN_TABLE))
    assert table.arguments["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert table.arguments["BillingMode"] == "PROVISIONED"
    assert table.arguments["ProvisionedThroughput"] == {"ReadCapacityUnits": 5, "WriteCapacityUnits": 2}
    assert table.arguments["TableName"] == "Plain"  # no TableName: the logical id, as Bindings.name gives


def test_names_conditions_fifo_queues_and_on_demand_streams(tmp_path: Path) -> None:
    resources = """\
    Events:
      Type: AWS::Kinesis::Stream
      Properties: {StreamModeDetails: {StreamMode: ON_DEMAND}, StreamEncryption: {KeyId: !GetAtt Key.Arn}}
    Orders:
      Type: AWS::SQS::Queue
      Properties:
        QueueName: orders.fifo
        FifoQueue: true
        ContentBasedDeduplication: true
        RedrivePolicy: '{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:elsewhere", "maxReceiveCount": 5}'
    Standard:
      Type: AWS::SQS::Queue
      Properties: {FifoQueue: false, DelaySeconds: !If [IsProd, 0, 5]}
    ProdOnly:
      Type: AWS::SQS::Queue
      Condition: IsProd
    """
    bindings = "resources: {Standard: {name: standard-local}}\n"
    wanted = {item.logical_id: item for item in plan(template(tmp_path, PLAIN_TABLE, resources, bindings=bindings))}
    assert set(wanted) == {"Plain", "Events", "Orders", "Standard"}  # ProdOnly's condition is false
    assert wanted["Events"].arguments == {"StreamName": "Events", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}
    orders = wanted["Orders"]
    assert orders.arguments["Attributes"] == {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    assert orders.dead_letter == "elsewhere" and orders.redrive == json.loads(
        '{"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:elsewhere", "maxReceiveCount": 5}'
    )
    assert wanted["Standard"].arguments == {"QueueName": "standard-local", "Attributes": {"DelaySeconds": "5"}}


def test_a_fifo_queue_without_a_fifo_name_is_refused_with_file_line_and_logical_id(tmp_path: Path) -> None:
    resources = """\
    Jobs:
      Type: AWS::SQS::Queue
      Properties: {FifoQueue: true}
    """
    with pytest.raises(ConfigError) as caught:
        plan(template(tmp_path, PLAIN_TABLE, resources))
    (error,) = caught.value.errors
    assert error.startswith(f"{tmp_path / 'template.yaml'}:") and "(Jobs)" in error and ".fifo" in error
    # hub validate says so too, and contacts nothing; with create_resources: false the hub creates nothing
    (tmp_path / "src").mkdir()
    result = run_cli("validate", str(tmp_path / "template.yaml"))
    assert result.returncode == 2 and "(Jobs)" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "hub-bindings.yaml").write_text("create_resources: false\n")
    assert run_cli("validate", str(tmp_path / "template.yaml")).returncode == 0


def test_nothing_is_created_against_aws_itself_nor_when_switched_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bucket = "Photos:\n  Type: AWS::S3::Bucket\n"
    caplog.set_level(logging.INFO, "hub.sam")
    prepare(template(tmp_path, PLAIN_TABLE, bucket, bindings="aws: {region: eu-west-1}\n"))  # no endpoint_url: AWS
    assert "creates no queues, streams or tables" in caplog.text
    assert (tmp_path / "buckets/Photos").is_dir()  # a bucket is a local folder all the same
    caplog.clear()
    prepare(template(tmp_path, PLAIN_TABLE, bindings="create_resources: false\n"))
    assert "create_resources: false" in caplog.text
