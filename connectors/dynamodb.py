"""`dynamodb`: a DynamoDB table's stream (DynamoDB Streams), read shard by shard.

| settle   | meaning for DynamoDB Streams                                                                     |
| -------- | ------------------------------------------------------------------------------------------------ |
| success  | the shard's highest contiguous settled sequence number is checkpointed in the hub's store         |
| failure  | not checkpointed; the shard reads again from the failed record (the dispatcher blocks it first)   |
| ordering | per shard (per item key with parallelization_factor > 1); child shards after their parents       |

The function receives AWS's DynamoDB Streams event (`{"Records": [{"eventName": "INSERT", "dynamodb": {...},
...}]}`), attribute values typed as DynamoDB types them, binary values base64. Filters see the record as the
function does, so patterns on `eventName` and `dynamodb.NewImage` work as on AWS. Only TRIM_HORIZON and LATEST
start positions exist, as on AWS. The shard machinery is in `connectors/shards/`.
"""

from __future__ import annotations

import base64
import json
import math
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from connectors.shards import (
    IteratorExpired,
    Page,
    ShardGone,
    ShardInfo,
    ShardReaderConfig,
    Start,
    StreamSource,
    error_code,
)
from hub.aws import client
from hub.records import Record
from hub.source import ConnectorSpec, SourceContext


class DynamoDBConfig(ShardReaderConfig):
    """Read a DynamoDB table's stream, as a Lambda event source mapping does."""

    type: Literal["dynamodb"]
    table_name: str | None = Field(None, description="The table; its latest stream is read (or give `stream_arn`).")
    stream_arn: str | None = Field(None, description="The stream's ARN (or give `table_name`).")
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        description="Where a new mapping starts: the oldest record (24 hours back at most) or changes made from "
        "now on. After that, each shard resumes from its checkpoint."
    )

    @model_validator(mode="after")
    def _check(self) -> DynamoDBConfig:
        if (self.table_name is None) == (self.stream_arn is None):
            raise ValueError("give exactly one of table_name and stream_arn")
        return self


def _plain(value: Any) -> Any:
    """A boto answer as JSON: binary attribute values base64 (as the event carries them), times as epoch."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


class DynamoDBService:
    """DynamoDB Streams as the shard readers need it (connectors/shards/service.py's ShardService): DescribeStream,
    GetShardIterator and GetRecords, and the DynamoDB Streams event record with plain JSON images."""

    kind = "dynamodb"
    max_limit = 1000
    batch_info_key = "DDBStreamBatchInfo"
    arrival_millis = False

    def __init__(self, config: DynamoDBConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.arn = config.stream_arn or ""
        self.region = config.connection.region or context.region
        self.client: Any = None

    async def connect(self, stack: AsyncExitStack) -> str:
        """Make the client; with `table_name`, find the table's latest stream (refused if it has none enabled). Sets
        `arn` and the region; the stream's ARN is its identity in the store."""
        conn, region = self.config.connection, self.context.region
        if self.config.stream_arn:
            self.arn = self.config.stream_arn
        else:
            async with client(conn, "dynamodb", region) as tables:
                table = (await tables.describe_table(TableName=self.config.table_name))["Table"]
            arn = table.get("LatestStreamArn")
            if not arn or not table.get("StreamSpecification", {}).get("StreamEnabled", True):
                raise ValueError(f"table {self.config.table_name!r} has no stream: enable DynamoDB Streams on it")
            self.arn = str(arn)
        self.region = self.arn.split(":")[3] or self.region
        self.client = await stack.enter_async_context(client(conn, "dynamodbstreams", region))
        return self.arn

    async def shards(self) -> list[ShardInfo]:
        """Every shard of the stream (all pages of DescribeStream), with its parent and whether it is closed."""
        out: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamArn": self.arn}
        while True:
            description = (await self.client.describe_stream(**kwargs))["StreamDescription"]
            for shard in description.get("Shards", []):
                parents = (shard["ParentShardId"],) if shard.get("ParentShardId") else ()
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                out.append(ShardInfo(shard["ShardId"], parents, closed))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return out
            kwargs = {"StreamArn": self.arn, "ExclusiveStartShardId": last}

    async def iterator(self, shard_id: str, start: Start) -> str:
        """A shard iterator from `start`. Raises ShardGone when the shard no longer exists (trimmed past the 24 h
        retention)."""
        kwargs: dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard_id, "ShardIteratorType": start.kind}
        if start.sequence is not None:
            kwargs["SequenceNumber"] = start.sequence
        try:
            answer = await self.client.get_shard_iterator(**kwargs)
        except Exception as exc:
            code = error_code(exc)
            if code == "ResourceNotFoundException":
                raise ShardGone(shard_id) from exc
            if code == "TrimmedDataAccessException" and start.kind != "TRIM_HORIZON":
                # the records after the checkpoint outlived the stream's 24 hours: read what is left
                self.context.log.warning(
                    "records of shard %s after %s expired before they were read; reading from the oldest left",
                    shard_id,
                    start.sequence,
                    extra={"fields": {"mapping": self.context.mapping}},
                )
                return await self.iterator(shard_id, Start("TRIM_HORIZON"))
            raise
        return str(answer["ShardIterator"])

    async def get_records(self, iterator: str, limit: int) -> Page:
        """One GetRecords call. Raises IteratorExpired for an expired iterator or trimmed data."""
        try:
            answer = await self.client.get_records(ShardIterator=iterator, Limit=limit)
        except Exception as exc:
            if error_code(exc) in ("ExpiredIteratorException", "TrimmedDataAccessException"):
                raise IteratorExpired(str(exc)) from exc
            raise
        return Page(answer.get("Records", []), answer.get("NextShardIterator"), None)

    def record(self, shard_id: str, raw: Any) -> Record:
        """The Record of one stream record: the event record as payload, the sequence number as position; filters see
        its fields as AWS shows them."""
        change = _plain(raw.get("dynamodb", {}))
        created = _epoch(raw["dynamodb"]["ApproximateCreationDateTime"])
        change["ApproximateCreationDateTime"] = (
            math.floor(created) if created == math.floor(created) else round(created, 3)
        )
        payload: dict[str, Any] = {
            "eventID": raw.get("eventID"),
            "eventName": raw.get("eventName"),
            "eventVersion": raw.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": raw.get("awsRegion") or self.region,
        }
        if raw.get("userIdentity"):
            payload["userIdentity"] = _plain(raw["userIdentity"])
        payload["dynamodb"] = change
        payload["eventSourceARN"] = self.arn
        sequence = str(change["SequenceNumber"])
        return Record(
            lane=shard_id,
            position=int(sequence),
            payload=payload,
            timestamp=created,
            size=len(json.dumps(payload, separators=(",", ":"))),
            item_id=sequence,
            order_key=json.dumps(change.get("Keys"), sort_keys=True),
        )

    def latest(self, since: float) -> Start:
        """A new LATEST mapping starts at LATEST."""
        return Start("LATEST")

    def resume_latest(self, since: float) -> Start:
        """After a restart before anything settled: from TRIM_HORIZON, skipping records created before the mapping
        began."""
        # no AT_TIMESTAMP on DynamoDB Streams: read from the oldest record, skip what is older than the
        # mapping (creation times are whole seconds, so the second it began is read again: at least once)
        return Start("TRIM_HORIZON", not_before=math.floor(since))


class DynamoDBSource(StreamSource):
    """A DynamoDB stream read shard by shard (connectors/shards/)."""

    def __init__(self, config: DynamoDBConfig, context: SourceContext) -> None:
        super().__init__(DynamoDBService(config, context), config, config.starting_position, None, context)


def sample_event() -> dict[str, Any]:
    """A DynamoDB Streams event of one INSERT, for `hub events dynamodb`."""
    return {
        "Records": [
            {
                "eventID": "c4ca4238a0b923820dcc509a6f75849b",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1428537600,
                    "Keys": {"Id": {"N": "101"}},
                    "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                    "SequenceNumber": "4421584500000000017450439091",
                    "SizeBytes": 26,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTableWithStream/stream/"
                "2015-06-27T00:48:05.899",
            }
        ]
    }


async def _reread(config: Any, context: SourceContext, info: dict[str, Any]) -> Any:
    from connectors.shards.reread import reread_dynamodb

    return await reread_dynamodb(config, context, info)


CONNECTOR = ConnectorSpec(
    type="dynamodb",
    config=DynamoDBConfig,
    build=DynamoDBSource,
    family="stream",
    summary="DynamoDB Streams: a table's item changes, one ordered lane per shard, checkpointed by sequence number.",
    sample_event=sample_event,
    data_key="dynamodb",
    defaults={"batch_size": 100, "maximum_batching_window": 0.0},
    requires=("aioboto3",),
    extra="aws",
    leases="lanes",  # a lease per shard
    batch_info_key="DDBStreamBatchInfo",
    reread=_reread,
)
