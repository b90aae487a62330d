"""SAM templates of tests/sam/ run end to end with `hub run template.yaml`: real brokers, the handlers' code as
written for Lambda (never edited for the hub), the resources bound through a bindings file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures_aws import REGION, boto, moto, unique  # noqa: F401
from tests.helpers import ROOT, HubProcess, wait_for

SAM = ROOT / "tests/sam"
MOTO_ACCOUNT = "123456789012"


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


def test_sqs_partial_batch_template_runs_end_to_end(tmp_path: Path, moto: str) -> None:  # noqa: F811
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
