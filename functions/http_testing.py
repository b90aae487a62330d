"""Handlers the `http` source's tests invoke, written as API Gateway and function URL handlers are."""

import base64
import json
import os
import time


def echo(event, context):
    """Answers with the event it received (for the tests to check) and the headers the request asked for."""
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-request-id": context.aws_request_id},
        "body": json.dumps(event),
    }


def shaped(event, context):
    """Answers with what the request's JSON body says: {statusCode, headers, multiValueHeaders, cookies, body...}."""
    return json.loads(event["body"])


def bare(event, context):
    """A payload 2.0 shortcut: not a dict with statusCode, so API Gateway answers 200 with it as JSON."""
    return {"path": event["rawPath"], "ok": True}


def png(event, context):
    data = bytes(range(256))
    return {
        "statusCode": 200,
        "headers": {"content-type": "image/png"},
        "body": base64.b64encode(data).decode(),
        "isBase64Encoded": True,
    }


def raises(event, context):
    raise RuntimeError("no such order")


def slow(event, context):
    time.sleep(float(os.environ.get("SLOW_SECONDS", "5")))
    return {"statusCode": 200, "body": "late"}


def noop(event, context):
    return {"statusCode": 200, "body": ""}


async def noop_async(event, context):
    """The same on the event loop (the benchmark: the hub's HTTP path without the thread hop of sync handlers)."""
    return {"statusCode": 200, "body": ""}


def who(event, context):
    """Answers with the function's WHO variable: which configuration of the function answered."""
    return {"statusCode": 200, "body": os.environ.get("WHO", "")}
