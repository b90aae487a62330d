"""The configuration of the `files` connector."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.types import Duration


class FilesConfig(BaseModel):
    """Watch a local folder; every complete file becomes an S3 event notification."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["files"]
    path: str = Field(description="The folder to watch (created if missing).")
    bucket: str | None = Field(None, description="`s3.bucket.name` in events. Default: the folder's name.")
    recursive: bool = Field(True, description="Watch sub-folders too; keys are paths relative to the folder.")
    prefix: str = Field("", description="Only keys that start with this.")
    suffix: str = Field("", description="Only keys that end with this (e.g. `.jpg`).")
    events: list[Literal["created", "removed"]] = Field(
        ["created"], min_length=1, description="`created` (ObjectCreated:Put) and/or `removed` (ObjectRemoved:Delete)."
    )
    settle_time: Duration = Field(
        1.0,
        ge=0,
        description="A file not closed yet is complete once its size has been stable this long "
        "(a file renamed or moved into the folder never waits for it).",
    )
    rescan_interval: Duration = Field(30.0, ge=0, description="Rescan the folder this often (0: only at start).")
