"""Handlers the tests and benchmarks use. Each writes what it received as one JSON line to the file named by
the RECORDER_OUT environment variable, so a test can see every invocation, even across hub restarts, and which
process (`pid`) ran it, and its parent (`ppid`: the hub, for a function in its own execution environment)."""

import json
import os
import time


def _write(entry):
    """Append the entry, with the ids of the process that ran the handler (`pid`) and of its parent, as one line."""
    line = (json.dumps({**entry, "pid": os.getpid(), "ppid": os.getppid()}) + "\n").encode()
    fd = os.open(os.environ["RECORDER_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def record(event, context):
    """Write the event (with the time it arrived and the request id) and succeed."""
    _write({"received": time.time(), "request_id": context.aws_request_id, "event": event})
    return {"ok": True}


def fail(event, context):
    """Write the event, then fail."""
    _write({"received": time.time(), "request_id": context.aws_request_id, "event": event})
    raise ValueError("this function always fails")


def fail_on_bad(event, context):
    """Fail for S3 objects whose key contains 'bad'; record the others."""
    _write({"received": time.time(), "request_id": context.aws_request_id, "event": event})
    for r in event.get("Records", []):
        if "bad" in r["s3"]["object"]["key"]:
            raise ValueError(f"cannot process {r['s3']['object']['key']}")
    return {"ok": True}


def slow(event, context):
    """Take SLOW_SECONDS (default 0.05) per invocation, then record."""
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0.05")))
    return record(event, context)


def held(event, context):
    """Wait while the file HOLD_FILE names exists (at most two minutes), then record: a test holds the function
    to let a backlog grow, and removes the file to let it drain."""
    path = os.environ["HOLD_FILE"]
    deadline = time.monotonic() + 120
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return record(event, context)


def noop(event, context):
    return None


async def noop_async(event, context):
    """Does nothing, on the event loop (benchmarks: the hub without the thread pool of sync handlers)."""
    return None


def until_marker(event, context):
    """Fail until the file named by MARKER_FILE exists, then record the event and succeed (a record that fails,
    is given up, and succeeds when replayed once its cause is fixed)."""
    if not os.path.exists(os.environ["MARKER_FILE"]):
        raise RuntimeError("not ready: the marker file is missing")
    return record(event, context)
