"""`kinesis`: Amazon Kinesis Data Streams, read shard by shard with standard iterators (GetRecords polling).

| settle   | meaning for Kinesis                                                                              |
| -------- | ------------------------------------------------------------------------------------------------ |
| success  | the shard's highest contiguous settled sequence number is checkpointed in the hub's store         |
| failure  | not checkpointed; the shard reads again from the failed record (the dispatcher blocks it first)   |
| ordering | per shard (per partition key with parallelization_factor > 1); child shards after their parents  |

The function receives AWS's Kinesis event (`{"Records": [{"kinesis": {...}, "eventSource": "aws:kinesis",
...}]}`, data base64). Filters see the record's fields at the top level (`partitionKey`, `awsRegion`, ...) and
the data, base64-decoded and parsed when it is JSON, under `data`. The shard machinery is in `connectors/shards/`.
"""

from __future__ import annotations

import base64
from contextlib import AsyncExitStack
from datetime import UTC, datetime
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
from hub.records import Record, data_view
from hub.source import ConnectorSpec, SourceContext


class KinesisConfig(ShardReaderConfig):
    """Read a Kinesis data stream, as a Lambda event source mapping with a standard iterator does."""

    type: Literal["kinesis"]
    stream_name: str | None = Field(None, description="The stream's name (or give `stream_arn`).")
    stream_arn: str | None = Field(None, description="The stream's ARN (or give `stream_name`).")
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = Field(
        description="Where a new mapping starts: the oldest record, records that arrive from now on, or "
        "`starting_position_timestamp`. After that, each shard resumes from its checkpoint."
    )
    starting_position_timestamp: datetime | None = Field(
        None, description="With AT_TIMESTAMP: an ISO-8601 time or Unix seconds."
    )
    invoke_identity_arn: str | None = Field(
        None, description="`invokeIdentityArn` in events. Default: arn:aws:iam::<account>:role/<mapping>."
    )

    @model_validator(mode="after")
    def _check(self) -> KinesisConfig:
        if (self.stream_name is None) == (self.stream_arn is None):
            raise ValueError("give exactly one of stream_name and stream_arn")
        if (self.starting_position == "AT_TIMESTAMP") != (self.starting_position_timestamp is not None):
            raise ValueError("starting_position_timestamp goes with starting_position: AT_TIMESTAMP, and only with it")
        return self


def kinesis_record(
    *,
    shard_id: str,
    sequence: str,
    partition_key: str,
    data: bytes,
    arrival: float,
    region: str,
    stream_arn: str,
    identity_arn: str,
    encryption: str | None = None,
) -> dict[str, Any]:
    """One `Records[]` entry of a Kinesis event."""
    inner: dict[str, Any] = {
        "kinesisSchemaVersion": "1.0",
        "partitionKey": partition_key,
        "sequenceNumber": sequence,
        "data": base64.b64encode(data).decode("ascii"),
        "approximateArrivalTimestamp": round(arrival, 3),
    }
    if encryption and encryption != "NONE":
        inner["encryptionType"] = encryption
    return {
        "kinesis": inner,
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": identity_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


class KinesisService:
    """Kinesis Data Streams as the shard readers need it (connectors/shards/service.py's ShardService): ListShards,
    GetShardIterator and GetRecords by stream ARN, and the Kinesis event record."""

    kind = "kinesis"
    max_limit = 10_000
    batch_info_key = "KinesisBatchInfo"
    arrival_millis = True

    def __init__(self, config: KinesisConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.arn = config.stream_arn or ""
        self.region = config.connection.region or context.region
        self.identity = config.invoke_identity_arn or f"arn:aws:iam::{context.account_id}:role/{context.mapping}"
        self.client: Any = None

    async def connect(self, stack: AsyncExitStack) -> str:
        """Make the client and describe the stream: sets `arn` and the region; the stream's identity in the store is
        its ARN and creation time."""
        self.client = await stack.enter_async_context(client(self.config.connection, "kinesis", self.context.region))
        which = (
            {"StreamARN": self.config.stream_arn} if self.config.stream_arn else {"StreamName": self.config.stream_name}
        )
        summary = (await self.client.describe_stream_summary(**which))["StreamDescriptionSummary"]
        self.arn = summary["StreamARN"]
        self.region = self.arn.split(":")[3] or self.region
        created = summary.get("StreamCreationTimestamp")
        return f"{self.arn}@{int(created.timestamp())}" if isinstance(created, datetime) else self.arn

    async def shards(self) -> list[ShardInfo]:
        """Every shard of the stream (all pages of ListShards), with its parents and whether it is closed."""
        out: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamARN": self.arn}
        while True:
            answer = await self.client.list_shards(**kwargs)
            for shard in answer.get("Shards", []):
                parents = tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                out.append(ShardInfo(shard["ShardId"], parents, closed))
            token = answer.get("NextToken")
            if not token:
                return out
            kwargs = {"NextToken": token}  # AWS refuses the stream name together with a token

    async def iterator(self, shard_id: str, start: Start) -> str:
        """A shard iterator from `start`. Raises ShardGone when the shard no longer exists."""
        kwargs: dict[str, Any] = {"StreamARN": self.arn, "ShardId": shard_id, "ShardIteratorType": start.kind}
        if start.sequence is not None:
            kwargs["StartingSequenceNumber"] = start.sequence
        if start.timestamp is not None:
            kwargs["Timestamp"] = start.timestamp
        try:
            answer = await self.client.get_shard_iterator(**kwargs)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise ShardGone(shard_id) from exc
            raise
        return str(answer["ShardIterator"])

    async def get_records(self, iterator: str, limit: int) -> Page:
        """One GetRecords call. Raises IteratorExpired for an expired iterator."""
        try:
            answer = await self.client.get_records(ShardIterator=iterator, Limit=limit, StreamARN=self.arn)
        except Exception as exc:
            if error_code(exc) == "ExpiredIteratorException":
                raise IteratorExpired(str(exc)) from exc
            raise
        return Page(answer.get("Records", []), answer.get("NextShardIterator"), answer.get("MillisBehindLatest"))

    def record(self, shard_id: str, raw: Any) -> Record:
        """The Record of one Kinesis record: the event record as payload, the sequence number as position, the
        partition key as order key; filters see the data decoded under `data`."""
        data: bytes = raw["Data"]
        arrival = raw["ApproximateArrivalTimestamp"]
        arrival_ts = arrival.timestamp() if isinstance(arrival, datetime) else float(arrival)
        sequence = str(raw["SequenceNumber"])
        payload = kinesis_record(
            shard_id=shard_id,
            sequence=sequence,
            partition_key=raw["PartitionKey"],
            data=data,
            arrival=arrival_ts,
            region=self.region,
            stream_arn=self.arn,
            identity_arn=self.identity,
            encryption=raw.get("EncryptionType"),
        )
        return Record(
            lane=shard_id,
            position=int(sequence),
            payload=payload,
            timestamp=arrival_ts,
            size=len(payload["kinesis"]["data"]) + 400,
            item_id=sequence,
            filter_view=data_view(filter_metadata(payload), "data", data),
            order_key=raw["PartitionKey"],
        )

    def latest(self, since: float) -> Start:
        """A new LATEST mapping starts at LATEST."""
        return Start("LATEST")

    def resume_latest(self, since: float) -> Start:
        """After a restart before anything settled: AT_TIMESTAMP the mapping's start, skipping what is older."""
        # botocore sends whole seconds: skip what arrived in that second before the mapping began
        return Start("AT_TIMESTAMP", timestamp=since, not_before=since)


def filter_metadata(payload: dict[str, Any]) -> dict[str, Any]:
    """The record's fields as filters see them: the envelope and the `kinesis` fields both at the top level
    (`partitionKey`, `awsRegion`), and under `kinesis` too; the data is added by data_view."""
    inner = {k: v for k, v in payload["kinesis"].items() if k != "data"}
    envelope = {k: v for k, v in payload.items() if k != "kinesis"}
    return {**envelope, **inner, "kinesis": inner}


class KinesisSource(StreamSource):
    """A Kinesis stream read shard by shard (connectors/shards/)."""

    def __init__(self, config: KinesisConfig, context: SourceContext) -> None:
        stamp = config.starting_position_timestamp
        if stamp is not None and stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)  # a time without a zone is UTC, as AWS reads it
        super().__init__(
            KinesisService(config, context),
            config,
            config.starting_position,
            stamp.timestamp() if stamp is not None else None,
            context,
        )


def sample_event() -> dict[str, Any]:
    """A Kinesis event of one record, for `hub events kinesis`."""
    shard = "shardId-000000000006"
    sequence = "49590338271490256608559692538361571095921575989136588898"
    return {
        "Records": [
            kinesis_record(
                shard_id=shard,
                sequence=sequence,
                partition_key="1",
                data=b"Hello, this is a test.",
                arrival=1545084650.987,
                region="us-east-1",
                stream_arn="arn:aws:kinesis:us-east-1:123456789012:stream/lambda-stream",
                identity_arn="arn:aws:iam::123456789012:role/lambda-role",
            )
        ]
    }


async def _reread(config: Any, context: SourceContext, info: dict[str, Any]) -> Any:
    from connectors.shards.reread import reread_kinesis

    return await reread_kinesis(config, context, info)


CONNECTOR = ConnectorSpec(
    type="kinesis",
    config=KinesisConfig,
    build=KinesisSource,
    family="stream",
    summary="Amazon Kinesis Data Streams: one ordered lane per shard, checkpointed by sequence number.",
    sample_event=sample_event,
    data_key="data",
    defaults={"batch_size": 100, "maximum_batching_window": 0.0},
    requires=("aioboto3",),
    extra="aws",
    leases="lanes",  # a lease per shard
    batch_info_key="KinesisBatchInfo",
    reread=_reread,
)
