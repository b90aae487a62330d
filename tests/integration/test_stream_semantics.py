"""Stream error semantics end to end, against a real Kinesis API (moto_server) and a real SQS destination."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures_aws import connection, create_queue, create_stream, put_records, receive_all
from tests.helpers import ROOT, HubProcess, TcpProxy, read_jsonl, shape, wait_for

WINDOW_SAMPLE = json.loads((ROOT / "tests/conformance/events/kinesis-time-window-event.json").read_text())


def kinesis_mapping(tmp: Path, url: str, stream: str, **settings: object) -> dict[str, object]:
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": "functions.testing.kinesis_poison", "timeout": "10s"}},
        "mappings": [
            {
                "name": "clicks",
                "function": "fn",
                "retry_delay": "10ms",
                "source": {
                    "type": "kinesis",
                    "stream_name": stream,
                    "starting_position": "TRIM_HORIZON",
                    "poll_interval": "20ms",
                    "connection": connection(url),
                },
                **settings,
            }
        ],
    }


def test_poison_pill_is_bisected_out_alone_to_sqs_and_the_lane_moves_on(tmp_path: Path, moto: str) -> None:
    stream = create_stream(moto)
    queue_url = create_queue(moto)
    config = kinesis_mapping(
        tmp_path,
        moto,
        stream,
        batch_size=16,
        maximum_batching_window="1s",
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=3,
        destination_config={"on_failure": {"type": "sqs", "queue_url": queue_url, "connection": connection(moto)}},
    )
    out = tmp_path / "calls.jsonl"
    values = [f"r{i:02d}" for i in range(16)]
    values[9] = "poison"
    placed = put_records(moto, stream, [("same-key", v.encode()) for v in values])
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        (body,) = (json.loads(b) for b in receive_all(moto, queue_url, 1))
        put_records(moto, stream, [("same-key", b"after")])
        wait_for(lambda: any("after" in c["batch"] for c in read_jsonl(out)), what="the lane to move on")
        assert hub.stop() == 0
    info = body["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == placed[9][1]
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 4  # the first attempt and 3 retries
    assert body["responseContext"]["functionError"] == "Unhandled"
    assert "payload" not in body
    good = [v for call in read_jsonl(out) if "poison" not in call["batch"] for v in call["batch"]]
    assert good == [v for v in values if v != "poison"] + ["after"]  # each once, in order


def test_tumbling_window_events_have_aws_shape(tmp_path: Path, moto: str) -> None:
    stream = create_stream(moto)
    out = tmp_path / "calls.jsonl"
    config = kinesis_mapping(tmp_path, moto, stream, tumbling_window="2s", batch_size=10)
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        put_records(moto, stream, [("k", b"w1"), ("k", b"w2")])

        def closed() -> list[dict[str, object]]:
            events = [c["event"] for c in read_jsonl(out)]
            return [e for e in events[1:] if e["isFinalInvokeForWindow"] and e["window"] == events[0]["window"]]

        wait_for(closed, timeout=20, what="the first window's final invocation")
        assert hub.stop() == 0
    first, final = read_jsonl(out)[0]["event"], closed()[0]
    sample = dict(WINDOW_SAMPLE)
    assert isinstance(first.pop("state"), dict) and isinstance(sample.pop("state"), dict)  # the function's own
    assert shape(first) == shape(sample)
    assert first["isFinalInvokeForWindow"] is False and final["isFinalInvokeForWindow"] is True
    assert final["Records"] == [] and final["window"] == first["window"]
    assert first["shardId"] == first["Records"][0]["eventID"].split(":")[0]
    assert first["eventSourceARN"].endswith(f":stream/{stream}")


def test_broker_away_is_retried_without_failing_the_function_and_the_lane_resumes(tmp_path: Path, moto: str) -> None:
    port = int(moto.rsplit(":", 1)[1])
    proxy = TcpProxy(port)
    try:
        stream = create_stream(moto)
        out = tmp_path / "calls.jsonl"
        config = kinesis_mapping(tmp_path, f"http://{proxy.url_host}", stream, batch_size=5)
        config["mappings"][0]["source"]["connection"].update(  # type: ignore[index]
            {"connect_timeout": 1, "read_timeout": 2, "max_attempts": 1}
        )

        def seen() -> list[str]:
            return [v for call in read_jsonl(out) for v in call["batch"]]

        with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
            hub.start()
            put_records(moto, stream, [("k", b"a%d" % i) for i in range(5)])
            wait_for(lambda: len(seen()) == 5, what="the first records")
            proxy.cut()
            put_records(moto, stream, [("k", b"b%d" % i) for i in range(5)])  # written while the hub cannot read
            hub.wait_log("the mapping is degraded", timeout=30)
            proxy.restore()
            wait_for(lambda: len(set(seen())) == 10, timeout=60, what="the lane to resume after the broker is back")
            assert hub.stop() == 0
            log = hub.log()
        assert seen() == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]  # in order, nothing twice
        assert "failed_invoke=0" in log  # connection trouble is not a function failure
        assert log.count("the mapping is degraded") == 1, "one line when the broker went away"
        assert "the source answers again" in log
    finally:
        proxy.close()


def test_dynamodb_tumbling_window_events_have_aws_shape(tmp_path: Path, moto: str) -> None:
    from tests.fixtures_aws import boto, create_table

    sample = json.loads((ROOT / "tests/conformance/events/dynamodb-time-window-event.json").read_text())
    table = create_table(moto)
    out = tmp_path / "calls.jsonl"
    config = {
        "checkpoints": f"sqlite:///{tmp_path / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": "functions.testing.window_recorder"}},
        "mappings": [
            {
                "function": "fn",
                "tumbling_window": "2s",
                "source": {
                    "type": "dynamodb",
                    "table_name": table,
                    "starting_position": "TRIM_HORIZON",
                    "poll_interval": "20ms",
                    "connection": connection(moto),
                },
            }
        ],
    }
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        boto(moto, "dynamodb").put_item(TableName=table, Item={"id": {"S": "a"}, "n": {"N": "1"}})
        wait_for(
            lambda: any(c["event"]["isFinalInvokeForWindow"] for c in read_jsonl(out)),
            timeout=20,
            what="a window's final invocation",
        )
        assert hub.stop() == 0
    first = read_jsonl(out)[0]["event"]
    final = next(c["event"] for c in read_jsonl(out) if c["event"]["isFinalInvokeForWindow"])
    assert first.pop("state") == {} and isinstance(sample.pop("state"), dict)
    sample["Records"] = sample["Records"][:1]
    assert shape({k: v for k, v in first.items() if k != "Records"}) == shape(
        {k: v for k, v in sample.items() if k != "Records"}
    )
    assert first["Records"][0]["eventName"] == "INSERT"
    assert final["state"] == {"count": 1} and final["Records"] == []
