"""The settings every shard reader has (the base of the `kinesis` and `dynamodb` configurations)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hub.aws import AwsConnection
from hub.types import Duration


class ShardReaderConfig(BaseModel):
    """Settings every shard reader has (Kinesis and DynamoDB Streams)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connection: AwsConnection = Field(
        default_factory=lambda: AwsConnection.model_validate({}),
        description="Where the AWS API is and the credentials to use.",
    )
    poll_interval: Duration = Field(
        0.1,
        gt=0,
        le=60,
        description="How long a caught-up shard waits before it asks again (a shard with data is read again at "
        "once). The default is fast, for local servers; against AWS use 1s (what Lambda does for Kinesis; "
        "Kinesis allows 5 reads per second per shard, shared by every consumer) or 250ms for DynamoDB Streams.",
    )
    shard_discovery_interval: Duration = Field(
        10.0, gt=0, description="How often the shard list is read again to find shards made by resharding."
    )
