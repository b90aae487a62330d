"""SAM templates translated to hub configurations: the corpus of tests/sam/ (expected fragments, and the hub's
own validation), intrinsic functions, parameters and conditions, and the errors a template the hub cannot run
gives (file, line, logical id, exit 2, never a traceback)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from hub.config import ConfigError, validate
from hub.sam import is_template
from hub.sam.translate import parse_overrides, translate
from tests.helpers import ROOT, run_cli

SAM = ROOT / "tests/sam"


def config(name: str, **overrides: str) -> dict[str, Any]:
    data: dict[str, Any] = translate(SAM / name / "template.yaml", overrides).data
    return data


@pytest.mark.parametrize("name", sorted(p.name for p in SAM.iterdir() if (p / "template.yaml").exists()))
def test_every_template_of_the_corpus_is_a_sam_template_and_translates(name: str) -> None:
    path = SAM / name / "template.yaml"
    assert is_template(path)
    document = translate(path)
    assert document.data["mappings"], name
    validate(copy.deepcopy(document))  # the hub's own validation: every check applies


def test_sqs_template_with_parameters_conditions_and_intrinsics() -> None:
    data = config("sqs-partial-batch", Prefix="shop", Environment="prod")
    fn = data["functions"]["ProcessOrdersFunction"]
    assert fn["handler"] == "app.lambda_handler" and fn["timeout"] == 10 and fn["memory"] == 256
    assert fn["concurrency"] == 50  # !If [IsProd, 50, 5]
    assert fn["environment"] == {
        "POWERTOOLS_SERVICE_NAME": "orders",  # Globals merged by aws-sam-translator
        "RESULTS_QUEUE_URL": "http://127.0.0.1:4566/000000000000/shop-results",
        "STAGE": "prod",  # !Select [0, !Split ["-", !Sub ...]]
    }
    (mapping,) = data["mappings"]
    assert mapping["source"]["queue_name"] == "shop-queue"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert (mapping["batch_size"], mapping["maximum_batching_window"], mapping["max_concurrency"]) == (10, 1, 5)
    assert config("sqs-partial-batch")["functions"]["ProcessOrdersFunction"]["concurrency"] == 5


def test_stream_templates_keep_every_event_source_mapping_setting() -> None:
    (kinesis,) = config("kinesis-bisect")["mappings"]
    assert kinesis["source"]["stream_name"] == "clicks-stream"
    assert kinesis["source"]["starting_position"] == "TRIM_HORIZON"
    assert kinesis["bisect_batch_on_function_error"] is True
    assert (kinesis["maximum_retry_attempts"], kinesis["maximum_record_age"]) == (2, 3600)
    assert kinesis["parallelization_factor"] == 2
    assert kinesis["destination_config"]["on_failure"]["queue_name"] == "clicks-failures"
    (dynamo,) = config("dynamodb-filter")["mappings"]
    assert dynamo["source"]["table_name"] == "shop-orders"
    assert dynamo["function_response_types"] == ["ReportBatchItemFailures"]
    assert '"INSERT"' in dynamo["filter_criteria"]["filters"][0]["pattern"]


def test_s3_schedule_msk_and_mq_templates() -> None:
    s3 = config("s3-resize")
    (upload,) = s3["mappings"]
    assert upload["source"] == {
        "type": "files",
        "path": "buckets/s3-resize-images",
        "bucket": "s3-resize-images",
        "events": ["created"],
        "suffix": ".jpg",
    }
    assert (upload["maximum_retry_attempts"], upload["maximum_event_age"]) == (1, 600)  # EventInvokeConfig
    assert s3["s3_endpoint"] == {"buckets": {"ThumbnailBucket": "buckets/ThumbnailBucket"}}
    nightly, hourly = config("schedule-dlq")["mappings"]
    assert nightly["source"]["service"] == "rule" and nightly["source"]["rule_name"] == "nightly-report"
    assert nightly["source"]["dead_letter_config"]["queue_name"] == "reports-dlq"
    assert (nightly["maximum_retry_attempts"], nightly["maximum_event_age"]) == (3, 3600)
    assert hourly["source"]["service"] == "scheduler" and hourly["source"]["timezone"] == "Europe/Paris"
    assert hourly["enabled"] is False
    (msk,) = config("msk-filter")["mappings"]
    assert msk["source"]["cluster_arn"].startswith("arn:aws:kafka:") and msk["source"]["topic"] == "payments"
    assert msk["source"]["bootstrap_servers"] == "127.0.0.1:9092"
    (mq,) = config("mq-rabbit")["mappings"]
    assert mq["source"] == {
        "type": "rabbitmq",
        "queue": "orders",
        "url": "amqp://guest:guest@127.0.0.1:5672/",
        "virtual_host": "/",
    }


def test_http_templates_emit_the_http_source_of_the_contract() -> None:
    (get,) = config("http-api-path")["mappings"]
    assert get["source"] == {"type": "http", "method": "GET", "path": "/orders/{id}", "api": "http"}
    hello, goodbye = config("function-url")["mappings"]
    assert hello["source"] == {
        "type": "http",
        "method": "ANY",
        "path": "$default",
        "api": "url",
        "api_id": "hello",
        "listen": "127.0.0.1:3001",  # each function URL a host of its own, after the shared server's port
    }
    assert goodbye["source"]["listen"] == "127.0.0.1:3002"
    (proxy,) = config("rest-proxy")["mappings"]
    assert proxy["source"] == {
        "type": "http",
        "method": "ANY",
        "path": "/{proxy+}",
        "api": "rest",
        "api_id": "Api",
        "stage": "prod",
    }


def test_parameter_overrides_as_sam_takes_them() -> None:
    assert parse_overrides(["A=1 B='two words'", "ParameterKey=C,ParameterValue=x=y"]) == {
        "A": "1",
        "B": "two words",
        "C": "x=y",
    }
    with pytest.raises(ConfigError):
        parse_overrides(["nope"])


def write(tmp_path: Path, resources: str) -> Path:
    path = tmp_path / "template.yaml"
    (tmp_path / "src").mkdir(exist_ok=True)
    path.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\nResources:\n" + resources
    )
    return path


def test_another_runtime_is_an_error_naming_file_line_and_logical_id(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  Node:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src/\n"
        "      Handler: index.handler\n      Runtime: nodejs20.x\n",
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 2
    assert f"{path}:9:" in result.stderr and "(Node)" in result.stderr and "nodejs20.x" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_event_type_the_hub_lacks_and_an_unknown_property_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src/\n"
        "      Handler: app.handler\n      Runtime: python3.12\n      Events:\n"
        "        Topic:\n          Type: SNS\n          Properties: {Topic: arn:aws:sns:us-east-1:1:t}\n"
        "        Q:\n          Type: SQS\n          Properties: {Queue: arn:aws:sqs:us-east-1:1:q, BatchSise: 3}\n",
    )
    result = run_cli("sam", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "event type SNS is not one the hub runs" in result.stderr and "(Fn)" in result.stderr
    assert f"{path}:16:" in result.stderr and "BatchSise is not a property of a SAM SQS event" in result.stderr


def test_hub_sam_prints_a_configuration_the_hub_validates(tmp_path: Path) -> None:
    result = run_cli("sam", str(SAM / "sqs-partial-batch/template.yaml"), "--parameter-overrides", "Prefix=p1")
    assert result.returncode == 0, result.stderr
    kept = SAM / "sqs-partial-batch" / f"kept-{tmp_path.name}.yaml"
    try:
        kept.write_text(result.stdout)
        check = run_cli("validate", str(kept))
    finally:
        kept.unlink()
    assert check.returncode == 0, check.stderr
    assert "queue_name: p1-queue" in result.stdout


def test_the_hubs_own_checks_name_the_template_line_and_logical_id(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src/\n"
        "      Handler: app.handler\n      Runtime: python3.12\n      Timeout: 901\n      Events:\n"
        "        Q:\n          Type: SQS\n          Properties:\n            Queue: arn:aws:sqs:us-east-1:1:q\n"
        "            BatchSize: 20000\n",
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:10:7 (Fn): functions.Fn.timeout" in result.stderr
    assert f"{path}:16:13 (Fn.Events.Q): mappings[0].batch_size" in result.stderr


def test_a_yaml_error_in_a_template_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "  Fn:\n    Type: AWS::Serverless::Function\n    Properties: [unclosed\n")
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:" in result.stderr


def test_validate_takes_parameter_overrides_with_quoted_values() -> None:
    template = str(SAM / "schedule-dlq/template.yaml")
    result = run_cli("validate", template, "--parameter-overrides", "Prefix=x 'NightlySchedule=rate(5 minutes)'")
    assert result.returncode == 0, result.stderr
    bad = run_cli("validate", template, "--parameter-overrides", "'NightlySchedule=rate(5 lightyears)'")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "(NightlyReport.Events.Nightly)" in bad.stderr


def test_a_json_template_on_one_line_is_a_template(tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    path.write_text(
        '{"AWSTemplateFormatVersion": "2010-09-09", "Transform": "AWS::Serverless-2016-10-31", "Resources": {"Fn": '
        '{"Type": "AWS::Serverless::Function", "Properties": {"Handler": "app.handler", "Runtime": "python3.12"}}}}'
    )
    assert is_template(path)
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    hub_config = tmp_path / "hub.json"
    hub_config.write_text(
        '{"functions": {"f": {"handler": "x.y", "description": "Transform: AWS::Serverless-2016-10-31"}}}'
    )
    assert not is_template(hub_config)


def test_dependencies_aws_would_refuse_are_errors_naming_their_line(tmp_path: Path) -> None:
    """A DependsOn naming no resource, resources that depend on each other (DependsOn, Ref, Fn::GetAtt, Fn::Sub),
    conditions that do: CloudFormation refuses the template, and so does the hub."""
    path = tmp_path / "template.yaml"
    (tmp_path / "src").mkdir()
    path.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Conditions:\n  A: !Condition B\n  B: !Not [!Condition A]\n  C: !Equals [x, x]\n"
        "Resources:\n"
        "  Fn:\n    Type: AWS::Serverless::Function\n    DependsOn: [Jobs, Nowhere]\n    Properties:\n"
        "      CodeUri: src/\n      Handler: app.handler\n      Runtime: python3.12\n"
        "      Environment: {Variables: {JOBS: !Sub '${Jobs.Arn} ${!Fn} ${AWS::Region}'}}\n"
        "  Jobs:\n    Type: AWS::SQS::Queue\n    Properties: {QueueName: !Sub '${Fn}-jobs'}\n"
        "  Other:\n    Type: AWS::SQS::Queue\n    Properties: {QueueName: !GetAtt Jobs.QueueName}\n"
        "    DependsOn: [FnRole, ServerlessRestApiProdStage]\n",  # made by SAM's transform
    )
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {path}:9:16: Resources.Fn.DependsOn (Fn): no resource Nowhere in the template"
        " (CloudFormation: unresolved resource dependencies)",
        f"error: {path}:9:17: Resources.Fn.DependsOn[0] (Fn): circular dependency between resources: Fn -> Jobs -> Fn"
        " (through DependsOn, Ref, Fn::GetAtt or Fn::Sub)",
        f"error: {path}:3:6: Conditions.A: circular dependency between conditions: A -> B -> A",
    ]
    acyclic = path.read_text().replace("Fn}-jobs", "AWS::StackName}-jobs").replace("[Jobs, Nowhere]", "Jobs")
    path.write_text(acyclic.replace("  A: !Condition B\n", "  A: !Condition C\n"))
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
