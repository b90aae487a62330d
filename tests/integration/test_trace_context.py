"""Trace context through a running hub (in this process, so that the OpenTelemetry SDK's in-memory exporter sees
its spans): an SQS message sent with an X-Ray `AWSTraceHeader` is invoked in a span of the same trace, whose
parent is the segment the header names; a message without one starts a trace of its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import yaml

from hub.app import Hub
from hub.config import load_config
from tests.fixtures_aws import boto, connection, create_queue
from tests.fixtures_otel import spans_exporter

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_an_sqs_record_with_an_aws_trace_header_continues_its_trace(tmp_path: Path, moto: str) -> None:
    exporter = spans_exporter()
    exporter.clear()
    queue = create_queue(moto)
    sqs = boto(moto, "sqs")
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=json.dumps({"traced": True}),
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": XRAY}},
    )
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"traced": False}))
    path = tmp_path / "hub.yaml"
    config = {
        "checkpoints": "memory://",
        "functions": {"f": {"handler": "functions.testing.sleeps_async", "runtime": "in-process"}},
        "mappings": [
            {
                "name": "traced",
                "function": "f",
                "batch_size": 1,
                "source": {"type": "sqs", "queue_url": queue, "connection": connection(moto), "wait_time": 1},
            }
        ],
    }
    path.write_text(yaml.safe_dump(config))
    hub = Hub(load_config(path))
    running = asyncio.ensure_future(hub.run(install_signals=False))
    try:
        await until(lambda: len(exporter.get_finished_spans()) >= 2, "a span per message")
    finally:
        hub.stop()
        await asyncio.wait_for(running, 30)
    spans = [
        s for s in exporter.get_finished_spans() if s.attributes and s.attributes.get("eventhub.mapping") == "traced"
    ]
    assert len(spans) == 2
    continued = [s for s in spans if s.context.trace_id == int("5759e988bd862e3fe1be46a994272793", 16)]
    [span] = continued
    assert span.parent is not None and span.parent.span_id == int("53995c3f42cd8ad8", 16)
    assert span.parent.is_remote and span.context.trace_flags.sampled
    [fresh] = [s for s in spans if s is not span]
    assert fresh.parent is None  # no trace header: a trace of its own
