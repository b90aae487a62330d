"""The configuration of the `redis` connector, and the URL as logs and ARNs show it."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.source import MappingFacts, SettingError
from hub.types import Duration


class RedisStreamsConfig(BaseModel):
    """Read one or more Redis streams through a consumer group; each entry is one record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["redis"]
    url: str = Field(
        "redis://localhost:6379/0",
        description="`redis://[user:password@]host:port/db`, `rediss://` for TLS, or `unix:///path?db=0`.",
    )
    password: SecretStr | None = Field(None, description="Password, when it is not in the URL.")
    stream: str | list[str] = Field(description="The stream key, or a list of keys (one lane each).")
    consumer_group: str | None = Field(None, description="Consumer group (created if missing). Default: the mapping.")
    consumer_name: str | None = Field(
        None,
        description="This process's consumer in the group. Default: `hostname-pid`. A fixed name lets a restarted "
        "process read its own pending entries again at once instead of after `claim_idle_time`.",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        "TRIM_HORIZON",
        description="Where a new consumer group starts: every entry in the stream (`0`) or only new ones (`$`). "
        "An existing group keeps its position.",
    )
    block: Duration = Field(5.0, gt=0, le=60, description="Longest wait of one blocking XREADGROUP.")
    claim_idle_time: Duration = Field(
        30.0,
        gt=0,
        description="Entries pending this long (failed, or read by a consumer that died) are claimed and delivered "
        "again, as SQS's visibility timeout does; keep it above the function's timeout.",
    )
    connect_timeout: Duration = Field(5.0, gt=0, description="Longest wait for a connection.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("use redis://host:port/db, rediss://host:port/db or unix:///path/to/socket")
        return value

    @field_validator("stream")
    @classmethod
    def _streams(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or any(not name for name in names) or len(set(names)) != len(names):
            raise ValueError("give one stream key, or a list of distinct, non-empty keys")
        return value

    @model_validator(mode="after")
    def _one_password(self) -> RedisStreamsConfig:
        if self.password is not None and urlsplit(self.url).password:
            raise ValueError("the password is given twice: in `url` and in `password`; keep one")
        return self

    @property
    def streams(self) -> list[str]:
        """The stream keys as a list, whichever form they were written in."""
        return [self.stream] if isinstance(self.stream, str) else list(self.stream)


def public_url(url: str) -> str:
    """The URL without credentials or query, as `scheme://host:port/db` (for ARNs and logs)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{host}:{parts.port or 6379}/{db}"


def check_mapping(config: RedisStreamsConfig, mapping: MappingFacts) -> None:
    """Several pollers need a consumer each: a fixed `consumer_name` would make them one consumer, each reading
    the others' pending entries again."""
    if mapping.pollers > 1 and config.consumer_name:
        raise SettingError(
            ("consumer_name",),
            f"with {mapping.pollers} pollers every process needs a consumer of its own, and a fixed name would make "
            "them one (each reading the others' pending entries again): leave it unset (`hostname-pid`)",
        )
