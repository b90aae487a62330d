"""Queues, streams and tables made to exist on an AWS API emulator (LocalStack, moto): each one created only when
it is missing, and never modified or deleted when it exists.

`create_all(wanted, connection, endpoint)` takes what a SAM template wants (hub/sam/resources.py plans it) in
order (a dead-letter queue before the queues that name it). Creating is idempotent: an "already exists" answer
(another hub created the resource a moment ago) counts as existing, and a stream or table is waited for until it
is ACTIVE either way. Each resource is logged once, "created queue X on ENDPOINT" or "queue X exists on ENDPOINT".
A failure raises `Unmade` for the resource, saying why and what to do.
"""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from hub.logs import fields

log = logging.getLogger("hub.sam")

ACTIVE_WAIT = {"Delay": 0.5, "MaxAttempts": 120}
"""How long a new stream or table is waited for until ACTIVE (60 s)."""

_SERVICE = {"queue": "sqs", "stream": "kinesis", "table": "dynamodb"}
_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "ResourceNotFoundException")
_EXISTS = ("QueueAlreadyExists", "QueueNameExists", "AWS.SimpleQueueService.QueueNameExists", "ResourceInUseException")


@dataclass
class Wanted:
    """One resource of the template and the call that creates it."""

    logical_id: str
    kind: str
    """queue, stream, table or bucket."""
    name: str
    """Its local name (a bucket: its folder)."""
    arguments: dict[str, Any] = field(default_factory=dict)
    """Of CreateQueue, CreateStream or CreateTable."""
    redrive: dict[str, Any] | None = None
    """A queue's RedrivePolicy; its deadLetterTargetArn is the emulator's ARN of the queue `dead_letter`."""
    dead_letter: str | None = None
    stream_needed: bool = False
    """A table that a DynamoDB event reads."""


class Unmade(Exception):
    """`wanted` could not be made to exist: the message says why and what to do."""

    def __init__(self, wanted: Wanted, message: str) -> None:
        super().__init__(message)
        self.wanted = wanted


async def create_all(wanted: list[Wanted], connection: Any, endpoint: str) -> None:
    """Create each of `wanted` (queues, streams, tables) that is missing on `endpoint`, in order, with one client
    per service (`connection` is a hub.aws.AwsConnection). Raises Unmade at the first that cannot be made."""
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    from hub import aws

    async with AsyncExitStack() as stack:
        clients: dict[str, Any] = {}
        for item in wanted:
            service = _SERVICE[item.kind]
            try:
                if service not in clients:
                    clients[service] = await stack.enter_async_context(aws.client(connection, service, "us-east-1"))
                await _CREATORS[item.kind](clients[service], item, endpoint)
            except WaiterError:
                what = f"{item.kind} {item.name} did not become ACTIVE on {endpoint} within 60 s"
                raise Unmade(item, f"{what}: is the emulator overloaded? Start the hub again") from None
            except ClientError as exc:
                why = f"{_code(exc)}: {exc.response['Error'].get('Message')}"
                what = f"the emulator at {endpoint} refused to create {item.kind} {item.name} ({why})"
                raise Unmade(item, f"{what}: fix the resource's properties, or create it yourself") from None
            except BotoCoreError as exc:
                raise Unmade(
                    item,
                    f"cannot reach the AWS API emulator at {endpoint} to create {item.kind} {item.name} ({exc}): "
                    "start the emulator (LocalStack, moto_server), point aws.endpoint_url in the bindings at it, or "
                    "set create_resources: false in the bindings to create nothing",
                ) from None


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


async def _queue_arn(sqs: Any, name: str) -> str | None:
    """The emulator's ARN of the queue `name`, None when there is no such queue."""
    from botocore.exceptions import ClientError

    try:
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    except ClientError as exc:
        if _code(exc) in _MISSING:
            return None
        raise
    return str(answer["Attributes"]["QueueArn"])


async def _create_queue(sqs: Any, item: Wanted, endpoint: str) -> None:
    from botocore.exceptions import ClientError

    if await _queue_arn(sqs, item.name) is not None:
        log.info("queue %s exists on %s", item.name, endpoint, extra=fields(resource=item.logical_id))
        return
    attributes = dict(item.arguments["Attributes"])
    if item.redrive is not None and item.dead_letter is not None:
        arn = await _queue_arn(sqs, item.dead_letter)
        if arn is None:
            raise Unmade(
                item,
                f"its RedrivePolicy names the queue {item.dead_letter}, which is neither in the template nor on "
                f"{endpoint}: create it, or add it to the template",
            )
        attributes["RedrivePolicy"] = json.dumps({**item.redrive, "deadLetterTargetArn": arn})
    try:
        await sqs.create_queue(QueueName=item.name, Attributes=attributes)
    except ClientError as exc:
        if _code(exc) not in _EXISTS:
            raise
        # another hub created it a moment ago
        log.info("queue %s exists on %s", item.name, endpoint, extra=fields(resource=item.logical_id))
        return
    log.info("created queue %s on %s", item.name, endpoint, extra=fields(resource=item.logical_id))


async def _create_stream(kinesis: Any, item: Wanted, endpoint: str) -> None:
    from botocore.exceptions import ClientError

    try:
        await kinesis.describe_stream_summary(StreamName=item.name)
        created = False
    except ClientError as exc:
        if _code(exc) not in _MISSING:
            raise
        try:
            await kinesis.create_stream(**item.arguments)
            created = True
        except ClientError as exc:
            if _code(exc) not in _EXISTS:
                raise
            created = False
    await kinesis.get_waiter("stream_exists").wait(StreamName=item.name, WaiterConfig=ACTIVE_WAIT)
    message = "created stream %s on %s" if created else "stream %s exists on %s"
    log.info(message, item.name, endpoint, extra=fields(resource=item.logical_id))


async def _create_table(dynamodb: Any, item: Wanted, endpoint: str) -> None:
    from botocore.exceptions import ClientError

    try:
        table = (await dynamodb.describe_table(TableName=item.name))["Table"]
    except ClientError as exc:
        if _code(exc) not in _MISSING:
            raise
        table = None
    created = False
    if table is None:
        try:
            await dynamodb.create_table(**item.arguments)
            created = True
        except ClientError as exc:
            if _code(exc) not in _EXISTS:
                raise
    await dynamodb.get_waiter("table_exists").wait(TableName=item.name, WaiterConfig=ACTIVE_WAIT)
    message = "created table %s on %s" if created else "table %s exists on %s"
    log.info(message, item.name, endpoint, extra=fields(resource=item.logical_id))
    if table is not None and item.stream_needed and not table.get("LatestStreamArn"):
        log.warning(
            "table %s exists without a stream: a DynamoDB event reads it, and gets nothing until the table has "
            "one (left as it is: enable its stream, or delete the table for the hub to create it)",
            item.name,
        )


_CREATORS = {"queue": _create_queue, "stream": _create_stream, "table": _create_table}
