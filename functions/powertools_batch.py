"""Partial batch handlers written as Powertools for AWS Lambda's docs write them: one `BatchProcessor` per source at
module level, and a handler that returns `process_partial_response(...)`.

A module-level processor holds the state of the batch it is processing (its records, successes and failures), so it
is correct only where one invocation at a time runs the module, as in a Lambda execution environment. The tests use
these handlers to prove that the hub's default runtime keeps that rule with several batches in flight.

Every record carries a JSON object with our own number `n`; `"fail": true` marks a poison record, which the record
handler raises for. The record handler pauses RECORD_PAUSE_SECONDS (default 0) per record, so that invocations
overlap. With MEET_DIR set, the first invocation of each environment waits (up to MEET_SECONDS, default 5) until
MEET_COUNT environments (default 2) have started one: the tests use it to make sure that several environments are in
flight at once whenever the hub dispatches batches concurrently, however fast the broker hands them out. Each
invocation appends one JSON line to the file named by RECORDER_OUT: the numbers of the records it saw (`seen`), the
numbers it reported as failed (`failed`: every record when the processor raised because all of them failed, which
fails the whole invocation), its process id and when it ran. A reported identifier that is not a record of the
invocation's own batch is written as `"foreign:<identifier>"`.
"""

import base64
import functools
import json
import os
import time

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError


def _payload(item):
    """Process one record's JSON object: pause a little, and raise for a poison record."""
    time.sleep(float(os.environ.get("RECORD_PAUSE_SECONDS", "0")))
    if item.get("fail"):
        raise ValueError(f"poison record {item['n']}")
    return item["n"]


def _write(entry):
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(os.environ["RECORDER_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of one line: lines of concurrent environments never interleave
    finally:
        os.close(fd)


_met = False


def _meet():
    """Once per environment: mark this one as started under MEET_DIR and wait until MEET_COUNT have."""
    global _met
    folder = os.environ.get("MEET_DIR")
    if _met or not folder:
        return
    _met = True
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + float(os.environ.get("MEET_SECONDS", "5"))
    while len(os.listdir(folder)) < int(os.environ.get("MEET_COUNT", "2")) and time.monotonic() < deadline:
        time.sleep(0.01)


def _key(identifier):
    """A batchItemFailures identifier in hashable form: a string, or Kafka's (topic-partition, offset)."""
    if isinstance(identifier, dict):
        return (identifier["partition"], int(identifier["offset"]))
    return identifier


def recorded(numbers_of):
    """Decorate a handler so that each invocation writes its line to RECORDER_OUT. `numbers_of(event)` gives
    {identifier of a record, as batchItemFailures names it: its `n`} for the records of the event."""

    def decorate(handler):
        @functools.wraps(handler)
        def run(event, context):
            _meet()
            numbers = numbers_of(event)
            entry = {"source": handler.__name__, "seen": list(numbers.values()), "pid": os.getpid()}
            entry["started"] = time.time()
            try:
                response = handler(event, context)
            except BatchProcessingError:  # every record failed: the processor fails the invocation
                _write({**entry, "failed": list(numbers.values()), "raised": True, "ended": time.time()})
                raise
            failed = []
            for item in response.get("batchItemFailures") or []:
                key = _key(item["itemIdentifier"])
                failed.append(numbers.get(key, f"foreign:{key}"))
            _write({**entry, "failed": failed, "raised": False, "ended": time.time()})
            return response

        return run

    return decorate


# ---- SQS -------------------------------------------------------------------------------------------------------

sqs_processor = BatchProcessor(event_type=EventType.SQS)


def sqs_record_handler(record):
    return _payload(record.json_body)


@recorded(lambda event: {r["messageId"]: json.loads(r["body"])["n"] for r in event["Records"]})
def sqs_handler(event, context):
    return process_partial_response(
        event=event, record_handler=sqs_record_handler, processor=sqs_processor, context=context
    )


# ---- Kinesis Data Streams --------------------------------------------------------------------------------------

kinesis_processor = BatchProcessor(event_type=EventType.KinesisDataStreams)


def kinesis_record_handler(record):
    return _payload(record.kinesis.data_as_json())


@recorded(
    lambda event: {
        r["kinesis"]["sequenceNumber"]: json.loads(base64.b64decode(r["kinesis"]["data"]))["n"]
        for r in event["Records"]
    }
)
def kinesis_handler(event, context):
    return process_partial_response(
        event=event, record_handler=kinesis_record_handler, processor=kinesis_processor, context=context
    )


# ---- DynamoDB Streams ------------------------------------------------------------------------------------------

dynamodb_processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def dynamodb_record_handler(record):
    image = record.dynamodb.new_image  # deserialised: numbers are Decimals
    return _payload({"n": int(image["n"]), "fail": bool(image.get("fail"))})


@recorded(
    lambda event: {r["dynamodb"]["SequenceNumber"]: int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in event["Records"]}
)
def dynamodb_handler(event, context):
    return process_partial_response(
        event=event, record_handler=dynamodb_record_handler, processor=dynamodb_processor, context=context
    )


# ---- Kafka -----------------------------------------------------------------------------------------------------

kafka_processor = BatchProcessor(event_type=EventType.Kafka)


def kafka_record_handler(record):
    return _payload(record.json_value)


@recorded(
    lambda event: {
        (f"{r['topic']}-{r['partition']}", r["offset"]): json.loads(base64.b64decode(r["value"]))["n"]
        for records in event["records"].values()
        for r in records
    }
)
def kafka_handler(event, context):
    return process_partial_response(
        event=event, record_handler=kafka_record_handler, processor=kafka_processor, context=context
    )
