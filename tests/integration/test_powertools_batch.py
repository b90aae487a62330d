"""A module-level Powertools `BatchProcessor` (as Powertools' docs write it) in the default runtime, against real
brokers, with several batches in flight at once: every invocation reports exactly the failures of its own batch, so
the right records are redelivered, given up to the destination, or deleted / checkpointed past.

A processor at module level holds the batch it is processing: it is correct only where one invocation at a time runs
the module, as in a Lambda execution environment (`functions/powertools_batch.py`). Each source gets 60 records, 15
of them poison (`"fail": true`), with `ReportBatchItemFailures`, a file on-failure destination and settings that
keep several batches in flight: SQS batches of 5 with the default `max_concurrency` (5); Kinesis with 2 shards and
`parallelization_factor: 2`; DynamoDB Streams with `parallelization_factor: 3`; Kafka with 3 partitions.

Each test waits until the hub has settled every record (SQS: an empty queue; streams: every record seen and no batch
in flight), then checks what happened: (a) each invocation's reported failures are the poison records of its own
batch; (b) every good record was processed (SQS: exactly once); (c) the destination holds the poison records (SQS:
exactly them, each after max_receive_count deliveries) and the lanes moved past them (the queue is empty, the Kafka
group committed the end of every partition, a restarted hub delivers only a new record); (d) the invocations ran in
several execution environments at once.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fixtures_aws import boto, create_queue, create_stream, create_table, free_port, put_records
from tests.fixtures_kafka import committed_offsets, create_topic, produce, unique
from tests.helpers import HubProcess, read_jsonl, wait_for
from tests.integration.test_dynamodb import hub_config as dynamodb_config
from tests.integration.test_kafka import hub_config as kafka_config
from tests.integration.test_kinesis import hub_config as kinesis_config
from tests.integration.test_sqs import depth, send
from tests.integration.test_sqs import hub_config as sqs_config

TOTAL = 60
POISON = frozenset(n for n in range(TOTAL) if n % 4 == 1)  # 15 poison records, spread over every lane
GOOD = frozenset(range(TOTAL)) - POISON
PAUSE = "0.005"  # per record: a batch of 5 takes 25 ms or more, so batches in flight overlap

Batch = tuple[str, int, int, int]
"""A given-up batch as the destination describes it: (lane, first position, last position, number of records)."""
Where = dict[tuple[str, int], int]
"""The record (its `n`) at each (lane, position) of a stream."""


def function(handler: str, out: Path) -> dict[str, Any]:
    """The function of every test: the default runtime (`python`: execution environments)."""
    return {
        "handler": f"functions.powertools_batch.{handler}",
        "timeout": "10s",
        # the first invocation of an environment waits until a second environment has started one
        "environment": {"RECORDER_OUT": str(out), "RECORD_PAUSE_SECONDS": PAUSE, "MEET_DIR": f"{out}.environments"},
    }


def partial_failures(failures: Path, **settings: Any) -> dict[str, Any]:
    return {
        "function_response_types": ["ReportBatchItemFailures"],
        "destination_config": {"on_failure": {"type": "file", "path": str(failures)}},
        **settings,
    }


def item(n: int) -> dict[str, Any]:
    return {"n": n, "fail": n in POISON}


# ---- what every source must show -------------------------------------------------------------------------------


def assert_each_invocation_reported_its_own_poison(calls: list[dict[str, Any]]) -> None:
    """(a) An invocation's failures are exactly the poison records of its own batch: what breaks when two
    invocations share the module-level processor (one's records reported by the other, or forgotten)."""
    assert calls, "no invocation"
    for call in calls:
        own_poison = sorted((n for n in call["seen"] if n in POISON), key=str)
        assert sorted(call["failed"], key=str) == own_poison, (
            f"an invocation (pid {call['pid']}) saw {call['seen']} and reported {call['failed']} as failed"
        )


def assert_several_environments(calls: list[dict[str, Any]], hub: HubProcess) -> None:
    """(d) The invocations overlapped: they ran in more than one execution environment, none in the hub."""
    assert hub.proc is not None
    pids = {call["pid"] for call in calls}
    assert len(pids) >= 2, f"every invocation ran in process {pids}: no two batches were in flight at once"
    assert hub.proc.pid not in pids


def processed(calls: list[dict[str, Any]]) -> set[int]:
    """The records some invocation processed successfully."""
    return {n for call in calls if not call["raised"] for n in call["seen"] if n not in call["failed"]}


def given_up(calls: list[dict[str, Any]], batches: list[Batch], where: Where) -> set[int]:
    """The records of the batches at the destination. The destination names a batch by its lane, first and last
    positions and size, not by its records (with parallelization_factor a batch skips the positions of the other
    sub-lanes); a given-up batch is what the last invocation of it held, from the lowest failure it reported on:
    the run of an invocation's records that starts and ends there."""
    records: set[int] = set()
    for lane, first, last, size in batches:
        runs = []
        for call in calls:
            seen = call["seen"]
            start = seen.index(where[(lane, first)]) if where[(lane, first)] in seen else len(seen)
            run = seen[start : start + size]
            if len(run) == size and run[-1] == where[(lane, last)]:
                runs.append(run)
        assert runs, f"no invocation held the given-up batch {lane} {first}..{last} of {size} records"
        records.update(runs[-1])
    return records


class Quiet:
    """Whether a stream mapping is done: every record was seen by an invocation and no batch is in flight. A batch
    stays in flight, retries included, until its outcome is final (processed, or handed to the destination), so
    this is a fact about the hub, whatever the function reported. Read through the admin endpoint's /status."""

    def __init__(self, config: dict[str, Any], out: Path) -> None:
        self.port = free_port()
        config["admin"] = {"listen": f"127.0.0.1:{self.port}"}
        self.out = out

    def __call__(self) -> bool:
        seen = {n for call in read_jsonl(self.out) for n in call["seen"]}  # first, then /status: see the docstring
        if seen != set(range(TOTAL)):
            return False
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5) as response:
            status = json.loads(response.read())
        return all(mapping["in_flight_batches"] == 0 for mapping in status["mappings"])


def assert_streams_gave_up_exactly_after_the_poison(
    calls: list[dict[str, Any]], failures: list[dict[str, Any]], batches: list[Batch], where: Where
) -> None:
    """(b, c) for streams. AWS checkpoints up to the lowest reported failure and retries the rest, so what is certain
    is: every good record was processed, every record was seen (the lanes moved past the poison), every poison
    record is in a given-up batch, and every given-up batch starts at a poison record (the lowest failure)."""
    assert processed(calls) >= GOOD, f"good records never processed: {sorted(GOOD - processed(calls))}"
    assert {n for call in calls for n in call["seen"]} == set(range(TOTAL))
    lost = POISON - given_up(calls, batches, where)
    assert not lost, f"poison records neither processed nor given up (checkpointed past): {sorted(lost)}"
    for lane, first, _, _ in batches:
        assert where[(lane, first)] in POISON, "a given-up batch starts at a record that did not fail"
    for failure in failures:
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert failure["requestContext"]["approximateInvokeCount"] == 2  # the first attempt and the one retry


def assert_restart_resumes_after_every_record(hub: HubProcess, out: Path, add_one: Callable[[], None]) -> None:
    """The lanes were checkpointed past every record, the poison ones included: a restarted hub delivers only a
    record added after them."""
    before = len(read_jsonl(out))
    add_one()
    hub.start()
    wait_for(lambda: any(TOTAL in call["seen"] for call in read_jsonl(out)), 30, "the new record")
    assert hub.stop() == 0
    assert [call["seen"] for call in read_jsonl(out)[before:]] == [[TOTAL]]


def shard_batches(key: str) -> Callable[[list[dict[str, Any]]], list[Batch]]:
    """The given-up batches of KinesisBatchInfo or DDBStreamBatchInfo records."""

    def batches(failures: list[dict[str, Any]]) -> list[Batch]:
        infos = [failure[key] for failure in failures]
        return [
            (i["shardId"], int(i["startSequenceNumber"]), int(i["endSequenceNumber"]), i["batchSize"]) for i in infos
        ]

    return batches


# ---- SQS -------------------------------------------------------------------------------------------------------


def test_sqs_redelivers_dead_letters_and_deletes_exactly_what_each_batch_reported(tmp_path: Path, moto: str) -> None:
    queue = create_queue(moto)
    send(moto, queue, [item(n) for n in range(TOTAL)])
    out, failures = tmp_path / "calls.jsonl", tmp_path / "failures.jsonl"
    mapping = partial_failures(
        failures,
        function="batch",
        source={"queue_url": queue, "visibility_backoff": 0},
        batch_size=5,  # and the default max_concurrency: 5 batches in flight
        max_receive_count=2,
    )
    config = sqs_config(tmp_path, moto, [mapping])
    config["functions"]["batch"] = function("sqs_handler", out)
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        # deleted once processed, or once at the destination: an empty queue is a settled one
        wait_for(lambda: depth(moto, queue) == (0, 0), 40, "an empty queue")
        calls = read_jsonl(out)
        assert hub.stop() == 0
        assert_each_invocation_reported_its_own_poison(calls)
        seen = Counter(n for call in calls for n in call["seen"])
        assert {n: seen[n] for n in GOOD} == dict.fromkeys(GOOD, 1), "each good message processed exactly once"
        assert {n: seen[n] for n in POISON} == dict.fromkeys(POISON, 2), "each poison message delivered twice"
        given_up = read_jsonl(failures)
        bodies = [json.loads(failure["requestPayload"]["Records"][0]["body"]) for failure in given_up]
        assert sorted(body["n"] for body in bodies) == sorted(POISON), "the destination holds exactly the poison"
        for failure in given_up:
            assert failure["requestContext"]["condition"] == "MaxReceiveCountExceeded"
            assert failure["requestContext"]["approximateInvokeCount"] == 2
        assert depth(moto, queue) == (0, 0), "the good messages deleted, the poison ones too once given up"
        assert_several_environments(calls, hub)


# ---- Kinesis ---------------------------------------------------------------------------------------------------


def test_kinesis_checkpoints_and_gives_up_exactly_what_each_batch_reported(tmp_path: Path, moto: str) -> None:
    stream = create_stream(moto, shards=2)
    placed = put_records(moto, stream, [(f"p{n % 8}", json.dumps(item(n)).encode()) for n in range(TOTAL)])
    assert len({shard for shard, _ in placed}) == 2, "the records are spread over both shards"
    where = {(shard, int(sequence)): n for n, (shard, sequence) in enumerate(placed)}
    out, failures = tmp_path / "calls.jsonl", tmp_path / "failures.jsonl"
    settings = partial_failures(
        failures, batch_size=5, parallelization_factor=2, maximum_retry_attempts=1, retry_delay="10ms"
    )
    config = kinesis_config(tmp_path, moto, stream, **settings)
    config["functions"]["fn"] = function("kinesis_handler", out)
    batches, quiet = shard_batches("KinesisBatchInfo"), Quiet(config, out)
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        wait_for(quiet, 40, "every record settled")
        calls, given = read_jsonl(out), read_jsonl(failures)
        assert hub.stop() == 0
        assert_each_invocation_reported_its_own_poison(calls)
        assert_streams_gave_up_exactly_after_the_poison(calls, given, batches(given), where)
        assert_several_environments(calls, hub)
        assert_restart_resumes_after_every_record(
            hub, out, lambda: put_records(moto, stream, [("p0", json.dumps(item(TOTAL)).encode())])
        )


# ---- DynamoDB Streams ------------------------------------------------------------------------------------------


def stream_positions(url: str, table: str) -> Where:
    """(shard, sequence number) -> n of every change of the table's stream, read with the DynamoDB Streams API."""
    arn = boto(url, "dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams = boto(url, "dynamodbstreams")
    where: Where = {}
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        shard_id = shard["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
        answer = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)
        for record in answer["Records"]:
            change = record["dynamodb"]
            where[(shard_id, int(change["SequenceNumber"]))] = int(change["NewImage"]["n"]["N"])
    return where


def test_dynamodb_checkpoints_and_gives_up_exactly_what_each_batch_reported(tmp_path: Path, moto: str) -> None:
    table = create_table(moto)
    dynamodb = boto(moto, "dynamodb")
    for n in range(TOTAL):
        image = {"id": {"S": f"item-{n}"}, "n": {"N": str(n)}, "fail": {"BOOL": n in POISON}}
        dynamodb.put_item(TableName=table, Item=image)
    where = stream_positions(moto, table)
    assert sorted(where.values()) == list(range(TOTAL))
    out, failures = tmp_path / "calls.jsonl", tmp_path / "failures.jsonl"
    settings = partial_failures(
        failures, batch_size=5, parallelization_factor=3, maximum_retry_attempts=1, retry_delay="10ms"
    )
    config = dynamodb_config(tmp_path, moto, table, **settings)
    config["functions"]["fn"] = function("dynamodb_handler", out)
    batches, quiet = shard_batches("DDBStreamBatchInfo"), Quiet(config, out)
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        wait_for(quiet, 40, "every change settled")
        calls, given = read_jsonl(out), read_jsonl(failures)
        assert hub.stop() == 0
        assert_each_invocation_reported_its_own_poison(calls)
        assert_streams_gave_up_exactly_after_the_poison(calls, given, batches(given), where)
        assert_several_environments(calls, hub)
        new = {"id": {"S": f"item-{TOTAL}"}, "n": {"N": str(TOTAL)}, "fail": {"BOOL": False}}
        assert_restart_resumes_after_every_record(hub, out, lambda: dynamodb.put_item(TableName=table, Item=new))


# ---- Kafka -----------------------------------------------------------------------------------------------------


def kafka_batches(failures: list[dict[str, Any]]) -> list[Batch]:
    """The given-up batches of KafkaBatchInfo records (a batch is of one partition)."""
    batches = []
    for failure in failures:
        info = failure["KafkaBatchInfo"]
        [(lane, offsets)] = info["recordsInfo"].items()
        batches.append((lane, int(offsets["firstRecordOffset"]), int(offsets["lastRecordOffset"]), info["batchSize"]))
    return batches


def test_kafka_commits_and_gives_up_exactly_what_each_batch_reported(tmp_path: Path, tansu: str) -> None:
    topic, group = unique("t"), unique("g")
    create_topic(tansu, topic, 3)
    messages = [(n % 3, f"k{n % 3}".encode(), json.dumps(item(n)).encode()) for n in range(TOTAL)]
    offsets = produce(tansu, topic, messages)
    where = {(f"{topic}-{n % 3}", offset): n for n, offset in enumerate(offsets)}
    out, failures = tmp_path / "calls.jsonl", tmp_path / "failures.jsonl"
    settings = partial_failures(failures, batch_size=5, maximum_retry_attempts=1, retry_delay="10ms")
    config = kafka_config(tmp_path, tansu, topic, group, **settings)
    config["functions"]["fn"] = function("kafka_handler", out)
    quiet = Quiet(config, out)
    with HubProcess(tmp_path, config) as hub:
        hub.start()
        wait_for(quiet, 40, "every record settled")
        ends = dict.fromkeys(range(3), TOTAL // 3)  # the offset after the last record of each partition
        wait_for(lambda: committed_offsets(tansu, group, topic, 3) == ends, 10, "commits past every record")
        calls, given = read_jsonl(out), read_jsonl(failures)
        assert hub.stop() == 0
        assert_each_invocation_reported_its_own_poison(calls)
        assert_streams_gave_up_exactly_after_the_poison(calls, given, kafka_batches(given), where)
        assert_several_environments(calls, hub)
