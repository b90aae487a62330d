"""The configuration of the `sqs` connector, and the queue settings `s3` shares."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.aws import AwsConnection
from hub.types import Duration


class QueueSettings(BaseModel):
    """How a queue is read (shared by `sqs` and the `notifications` mode of `s3`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_url: str | None = Field(None, description="The queue's URL (or give `queue_name`).")
    queue_name: str | None = Field(None, description="The queue's name, looked up at start (or give `queue_url`).")
    connection: AwsConnection = Field(
        default_factory=lambda: AwsConnection.model_validate({}),
        description="Where the AWS API is and the credentials to use.",
    )
    wait_time: Duration = Field(
        20.0, ge=1, le=20, description="Long polling: how long one ReceiveMessage waits for messages (1s to 20s)."
    )
    visibility_timeout: Duration | None = Field(
        None,
        ge=1,
        le=43200,
        description="The visibility timeout asked for when receiving and when extending it. Default: the queue's.",
    )
    visibility_backoff: Duration | None = Field(
        None,
        ge=0,
        le=43200,
        description="A failed message becomes visible again after this x 2^(receives - 1), at most the visibility "
        "timeout (0: at once). Default: it waits out its visibility timeout, as Lambda lets it.",
    )


class SqsConfig(QueueSettings):
    """Read an SQS queue as a Lambda event source mapping does (standard or FIFO)."""

    type: Literal["sqs"]

    @model_validator(mode="after")
    def _one_queue(self) -> SqsConfig:
        if (self.queue_url is None) == (self.queue_name is None):
            raise ValueError("give exactly one of queue_url and queue_name")
        return self
