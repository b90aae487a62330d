"""SQS handlers the tests use. Each writes one JSON line per invocation to the file named by RECORDER_OUT:
the message ids, bodies and receive counts it saw."""

import json
import os
import time


def _write(event, **extra):
    entry = {
        "received": time.time(),
        "messages": [
            {"id": r["messageId"], "body": r["body"], "attempt": int(r["attributes"]["ApproximateReceiveCount"])}
            for r in event["Records"]
        ],
        **extra,
    }
    fd = os.open(os.environ["RECORDER_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def fail_marked_once(event, context):
    """Report messages whose JSON body says {"fail": true} as failed on their first delivery only."""
    _write(event)
    failures = [
        {"itemIdentifier": r["messageId"]}
        for r in event["Records"]
        if json.loads(r["body"]).get("fail") and r["attributes"]["ApproximateReceiveCount"] == "1"
    ]
    return {"batchItemFailures": failures}


def always_fails(event, context):
    _write(event)
    raise ValueError("this function always fails")


def slow(event, context):
    """Take SLOW_SECONDS (default 0.05), then record the batch."""
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0.05")))
    _write(event)


def fails_on_marked(event, context):
    """Record the batch, then fail if a message's JSON body says {"fail": true}."""
    _write(event)
    if any(json.loads(r["body"]).get("fail") for r in event["Records"]):
        raise ValueError("a message is marked to fail")
    return {"ok": True}
