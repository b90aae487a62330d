"""On-failure destinations on AWS APIs: an SQS queue and an S3 bucket.

| destination | what it receives                                                                              |
| ----------- | --------------------------------------------------------------------------------------------- |
| `sqs`       | one message per given-up batch: AWS's failure record, metadata only (as AWS sends to SQS/SNS) |
| `sqs` (DLQ) | as a dead-letter queue: one message per event, the event as its body and the dead letter's   |
|             | attributes as message attributes (a text body, such as a schedule's text `input`, as it is) |
| `s3`        | one object per given-up batch: the failure record plus the whole event as `payload`, under    |
|             | `aws/lambda/<mapping>/<shardId>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>` (AWS's layout, with the |
|             | mapping's name where AWS writes the event source mapping's UUID)                              |

`send` returns only once SQS or S3 has accepted every document, and raises otherwise (the dispatcher retries
with backoff and settles the records only after a successful send). Clients are made at the first send and
kept until `close`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.aws import AwsConnection, client
from hub.source import DestinationSpec, Document

SQS_BATCH = 10
SQS_BATCH_BYTES = 256 * 1024


def _json(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), default=str)


class SqsDestinationConfig(BaseModel):
    """Send AWS's failure records (or, as a dead-letter queue, the events themselves) to an SQS queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["sqs"]
    queue_url: str | None = Field(None, description="The queue's URL (or give `queue_name`).")
    queue_name: str | None = Field(None, description="The queue's name, looked up once (or give `queue_url`).")
    connection: AwsConnection = Field(
        default_factory=lambda: AwsConnection.model_validate({}),
        description="Where the AWS API is and the credentials to use.",
    )

    @model_validator(mode="after")
    def _check(self) -> SqsDestinationConfig:
        if (self.queue_url is None) == (self.queue_name is None):
            raise ValueError("give exactly one of queue_url and queue_name")
        return self


class S3DestinationConfig(BaseModel):
    """Write AWS's failure records, with the whole event, to an S3 bucket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["s3"]
    bucket: str = Field(description="The bucket.")
    prefix: str = Field("", description="Put before AWS's `aws/lambda/...` keys, e.g. `failures/`.")
    connection: AwsConnection = Field(
        default_factory=lambda: AwsConnection.model_validate({}),
        description="Where the AWS API is and the credentials to use.",
    )


class _Clients:
    """One client, made at first use and closed with the destination."""

    def __init__(self, connection: AwsConnection, service: str, region: str) -> None:
        self.connection = connection
        self.service = service
        self.region = region
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        async with self._lock:
            if self._client is None:
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(client(self.connection, self.service, self.region))
                self._stack = stack
            return self._client

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


class SqsDestination:
    """An SQS queue as a destination and a dead-letter queue: one message per document (SendMessageBatch), its
    attributes as message attributes."""

    per_record = False
    includes_payload = False

    def __init__(self, config: SqsDestinationConfig, region: str) -> None:
        self.config = config
        self.name = f"sqs:{config.queue_url or config.queue_name}"
        self._clients = _Clients(config.connection, "sqs", region)
        self._url = config.queue_url

    async def _queue_url(self, sqs: Any) -> str:
        if self._url is None:
            self._url = str((await sqs.get_queue_url(QueueName=self.config.queue_name))["QueueUrl"])
        return self._url

    async def send(self, documents: Sequence[Document]) -> None:
        """Send every document, in batches of 10; raises when SQS refused any (the dispatcher sends them again)."""
        sqs = await self._clients.get()
        url = await self._queue_url(sqs)
        for chunk in _chunks([_entry(d) for d in documents]):
            entries = [{"Id": str(i), **entry} for i, entry in enumerate(chunk)]
            answer = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
            failed = answer.get("Failed") or []
            if failed:
                first = failed[0]
                raise RuntimeError(
                    f"SQS refused {len(failed)} of {len(entries)} messages: {first.get('Code')}: {first.get('Message')}"
                )

    async def close(self) -> None:
        """Close the client."""
        await self._clients.close()


def _entry(document: Document) -> dict[str, Any]:
    """A SendMessageBatch entry (without its Id): a dead letter's text body goes as it is, anything else as JSON."""
    if document.attributes is None:
        return {"MessageBody": _json(document.body)}
    body = document.body if isinstance(document.body, str) else _json(document.body)
    return {"MessageBody": body, "MessageAttributes": document.attributes}


def _chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Groups of at most 10 messages and 256 KiB (bodies and attributes), as SendMessageBatch takes them."""
    out: list[list[dict[str, Any]]] = []
    size = 0
    for entry in entries:
        length = len(entry["MessageBody"].encode()) + sum(
            len(name) + len(value["DataType"]) + len(value["StringValue"].encode())
            for name, value in entry.get("MessageAttributes", {}).items()
        )
        if not out or len(out[-1]) == SQS_BATCH or size + length > SQS_BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(entry)
        size += length
    return out


class S3Destination:
    """An S3 bucket as a destination: one object per document, under `prefix`, named as AWS names on-failure records."""

    per_record = False
    includes_payload = True

    def __init__(self, config: S3DestinationConfig, region: str) -> None:
        self.config = config
        self.name = f"s3:{config.bucket}/{config.prefix}"
        self._clients = _Clients(config.connection, "s3", region)

    async def send(self, documents: Sequence[Document]) -> None:
        """Put one object per document; raises on the first refusal (the dispatcher sends them again)."""
        s3 = await self._clients.get()
        for document in documents:
            await s3.put_object(
                Bucket=self.config.bucket,
                Key=self.config.prefix + object_key(document),
                Body=_json(document.body).encode(),
                ContentType="application/json",
            )

    async def close(self) -> None:
        """Close the client."""
        await self._clients.close()


def object_key(document: Document) -> str:
    """AWS's key for a failure record: `aws/lambda/<ESM>/<shardId>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>` for a
    stream or Kafka batch, `aws/lambda/async/<function>/YYYY/MM/DD/...` for an asynchronous invocation."""
    body = document.body if isinstance(document.body, dict) else {}
    when = _when(body.get("timestamp"))
    tail = f"{when:%Y/%m/%d}/{when:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}"
    info = next((v for k, v in body.items() if k.endswith("BatchInfo") and isinstance(v, dict)), None)
    if info is None and "requestPayload" in body:
        function_arn = str((body.get("requestContext") or {}).get("functionArn") or "")
        function = function_arn.split(":function:")[-1].split(":")[0] or document.mapping or "unknown"
        return f"aws/lambda/async/{_safe(function)}/{tail}"
    lane = str((info or {}).get("shardId") or document.lane)
    return f"aws/lambda/{_safe(document.mapping or 'unknown')}/{_safe(lane or 'unknown')}/{tail}"


def _when(stamp: Any) -> datetime:
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def _safe(part: str) -> str:
    return part.replace("/", "_")


def _sqs_inbox(config: SqsDestinationConfig, region: str, store: Any, mapping: str) -> Any:
    from connectors.aws_failures import SqsInbox

    return SqsInbox(config, region)


def _s3_inbox(config: S3DestinationConfig, region: str, store: Any, mapping: str) -> Any:
    from connectors.aws_failures import S3Inbox

    return S3Inbox(config, region)


SQS_DESTINATION = DestinationSpec(
    type="sqs",
    config=SqsDestinationConfig,
    build=SqsDestination,
    requires=("aioboto3",),
    extra="aws",
    dead_letter=True,
    inbox=_sqs_inbox,
)
S3_DESTINATION = DestinationSpec(
    type="s3", config=S3DestinationConfig, build=S3Destination, requires=("aioboto3",), extra="aws", inbox=_s3_inbox
)
