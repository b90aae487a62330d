"""The configuration of the `s3` connector: the notification queue, or the bucket to poll."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from connectors.sqs import QueueSettings
from hub.types import Duration

QUEUE_ONLY = ("queue_url", "queue_name", "wait_time", "visibility_timeout", "visibility_backoff")
POLL_ONLY = ("bucket", "prefix", "suffix", "poll_interval", "lookback", "starting_position")


class S3Config(QueueSettings):
    """S3 event notifications: read from the SQS queue a bucket notifies, or by listing the bucket."""

    type: Literal["s3"]
    mode: Literal["notifications", "poll"] = Field(
        "notifications",
        description="`notifications`: read the SQS queue the bucket sends its event notifications to "
        "(`queue_url`/`queue_name`); `poll`: list `bucket` every `poll_interval` (stores without notifications).",
    )
    bucket: str | None = Field(None, description="poll: the bucket to list.")
    prefix: str = Field("", description="poll: only keys that start with this.")
    suffix: str = Field("", description="poll: only keys that end with this (e.g. `.jpg`).")
    poll_interval: Duration = Field(10.0, gt=0, le=3600, description="poll: how often the bucket is listed.")
    lookback: Duration = Field(
        3600.0,
        ge=0,
        le=604800,
        description="poll: how much older than the newest handled object a new object may look and still be "
        "found (multipart uploads carry the time they began). The state kept grows with the objects modified "
        "in this window.",
    )
    starting_position: Literal["LATEST", "TRIM_HORIZON"] = Field(
        "LATEST",
        description="poll, first start only: `LATEST` handles objects written from now on; `TRIM_HORIZON` also "
        "every object already in the bucket.",
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> S3Config:
        if self.mode == "notifications":
            if (self.queue_url is None) == (self.queue_name is None):
                raise ValueError("mode notifications: give exactly one of queue_url and queue_name")
            wrong = [name for name in POLL_ONLY if name in self.model_fields_set]
        else:
            if self.bucket is None:
                raise ValueError("mode poll: give the bucket")
            wrong = [name for name in QUEUE_ONLY if name in self.model_fields_set]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: not used with mode {self.mode}")
        return self
