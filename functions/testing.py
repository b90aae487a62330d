"""Misbehaving handlers the tests use to prove that a function fault is a failed invocation, never a dead hub."""

import asyncio
import threading


def returns_garbage(event, context):
    return {"not json": object()}


def returns_too_deep(event, context):
    """A result nested deeper than json.dumps goes (it raises RecursionError, not TypeError)."""
    deep = []
    for _ in range(100_000):
        deep = [deep]
    return deep


_release = threading.Event()


def hangs(event, context):
    _release.wait(5)  # far past any test timeout; returns by itself so no thread outlives the tests for long
    return "late"


async def async_hangs(event, context):
    await asyncio.sleep(3600)


def raises(event, context):
    return {}["missing"]


def calls_sys_exit(event, context):
    import sys

    sys.exit(3)


_inside = {"now": 0, "most": 0}
_inside_lock = threading.Lock()


def notes_its_thread(event, context):
    """Returns the name of the thread it ran on, and how many invocations were inside the module at once, after a
    short pause so that calls that may overlap do."""
    with _inside_lock:
        _inside["now"] += 1
        _inside["most"] = max(_inside["most"], _inside["now"])
        overlap = _inside["now"]
    _release.wait(0.02)
    with _inside_lock:
        overlap = max(overlap, _inside["now"])
        _inside["now"] -= 1
    return {"thread": threading.current_thread().name, "overlap": overlap}


async def async_notes_overlap(event, context):
    """How many invocations were inside this async handler at once."""
    _inside["now"] += 1
    await asyncio.sleep(0.01)
    overlap = _inside["now"]
    _inside["now"] -= 1
    return {"overlap": overlap}


def poison(event, context):
    """Fail any batch that holds a record whose data is marked poison; succeed otherwise. Records the batches it saw
    (the `n` of each record's data). Records are the `memory` connector's: their value is under `data`."""
    import json
    import os

    records = event.get("Records", [])
    out = os.environ.get("RECORDER_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"batch": [r["data"].get("n") for r in records]}) + "\n")
    if any(r["data"].get("poison") for r in records):
        raise ValueError("poison pill")
    return None


def partial(event, context):
    """Report records whose data is marked fail as batch item failures (by their messageId)."""
    failed = [r["messageId"] for r in event["Records"] if r["data"].get("fail")]
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}


def bad_partial(event, context):
    """A partial batch response naming an item that is not in the batch."""
    return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}


def window_sum(event, context):
    """A tumbling-window aggregation: sums `n` of the records' data into the state; records each call."""
    import json
    import os

    state = dict(event.get("state") or {})
    state["sum"] = state.get("sum", 0) + sum(r["data"].get("n", 0) for r in event["Records"])
    state["count"] = state.get("count", 0) + len(event["Records"])
    out = os.environ.get("RECORDER_OUT")
    if out:
        with open(out, "a") as f:
            keys = ("window", "state", "shardId", "isFinalInvokeForWindow", "isWindowTerminatedEarly")
            f.write(
                json.dumps({"records": [r["data"]["n"] for r in event["Records"]], **{k: event.get(k) for k in keys}})
                + "\n"
            )
    return {"state": state, "batchItemFailures": []}


def exits(event, context):
    import os

    os._exit(1)


def segfaults(event, context):
    import ctypes

    ctypes.string_at(0)


def spins(event, context):
    while True:
        pass


def eats_memory(event, context):
    hog = []
    while True:
        hog.append(bytearray(16 * 1024 * 1024))


def env_and_logs(event, context):
    """Print and log, and show what the environment holds."""
    import logging
    import os

    print(f"hello from {context.function_name}")
    logging.getLogger("fn").warning("a warning with request %s", context.aws_request_id)
    return {
        "env": {k: os.environ.get(k) for k in ("GREETING", "HUB_SECRET", "AWS_LAMBDA_FUNCTION_NAME")},
        "pid": os.getpid(),
        "remaining": context.get_remaining_time_in_millis(),
        "memory": context.memory_limit_in_mb,
    }


def kinesis_poison(event, context):
    """Record the Kinesis records' data of each batch; fail any batch holding the record `poison`."""
    import base64
    import json
    import os

    data = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
    with open(os.environ["RECORDER_OUT"], "a") as f:
        f.write(json.dumps({"batch": data, "event": event if "window" in event else None}) + "\n")
    if "poison" in data:
        raise ValueError("poison pill")
    return {"state": event.get("state") or {}} if "window" in event else None


def window_recorder(event, context):
    """Record every tumbling-window invocation's event whole; keep a count in the state."""
    import json
    import os

    with open(os.environ["RECORDER_OUT"], "a") as f:
        f.write(json.dumps({"event": event}) + "\n")
    state = dict(event.get("state") or {})
    state["count"] = state.get("count", 0) + len(event["Records"])
    return {"state": state}


def blocks_forever(event, context):
    """A sync handler that never returns (in-process, its thread cannot be killed)."""
    threading.Event().wait()


def sleeps_and_tells_its_pid(event, context):
    """Sleep `sleep` seconds, then say which process (execution environment) ran the invocation."""
    import os
    import time

    time.sleep(event.get("sleep", 0))
    return os.getpid()


def says_it_started_then_blocks(event, context):
    """Create the file STARTED_FILE names, then never return."""
    import os

    with open(os.environ["STARTED_FILE"], "w") as f:
        f.write(str(os.getpid()))
    threading.Event().wait()


def row_changes(event, context):
    """Record each batch of DynamoDB Streams-shaped records (the `postgres` source) as (eventName, id, note) and the
    batch's sequence numbers; fail a batch that holds a row whose `note` is `poison`, and report a row whose note is
    `fail` as a batch item failure. Takes SLOW_SECONDS (default 0) per batch first."""
    import json
    import os
    import time

    time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
    batch = []
    for r in event["Records"]:
        image = r["dynamodb"].get("NewImage") or r["dynamodb"].get("OldImage") or {}
        note = image.get("note", {}).get("S")
        batch.append([r["eventName"], int(r["dynamodb"]["Keys"]["id"]["N"]), note, r["dynamodb"]["SequenceNumber"]])
    with open(os.environ["RECORDER_OUT"], "a") as f:
        f.write(json.dumps({"batch": batch, "event": event if "window" in event else None}) + "\n")
    if any(note == "poison" for _, _, note, _ in batch):
        raise ValueError("poison pill")
    if "window" in event:
        return {"state": {"rows": (event.get("state") or {}).get("rows", 0) + len(batch)}}
    return {"batchItemFailures": [{"itemIdentifier": seq} for _, _, note, seq in batch if note == "fail"]}


async def sleeps_async(event, context):
    """Sleep `seconds` on the event loop (in-process, invocations overlap), then return them."""
    await asyncio.sleep(event.get("seconds", 0))
    return event.get("seconds", 0)


def spins_when_told(event, context):
    """Spin for ever when the event says `spin`; otherwise return at once."""
    while event.get("spin"):
        pass
    return "quick"


def returns_odd_json(event, context):
    """A result that only Python's json writes and reads back (NaN, Infinity), a number past 64 bits, text beyond
    ASCII, and the event itself."""
    return {"nan": float("nan"), "inf": float("-inf"), "big": 10**30, "text": "é ☃", "event": event}


def runs_and_tells(event, context):
    """Exit when the event says `exit`, spin for ever when it says `spin`, eat memory when it says `eat`; else
    sleep `sleep` seconds and tell which process ran it, when it began and ended, and the time it had left as it
    began."""
    import os
    import time

    began, remaining = time.time(), context.get_remaining_time_in_millis()
    if event.get("exit"):
        os._exit(1)
    while event.get("spin"):
        pass
    hog = []
    while event.get("eat"):
        hog.append(bytearray(16 * 1024 * 1024))
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "began": began, "ended": time.time(), "remaining": remaining, "n": event.get("n")}


def returns_its_event(event, context):
    """Answers with the event it received, as it received it."""
    return event
