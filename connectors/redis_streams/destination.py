"""The `redis` on-failure destination and dead-letter queue: one stream entry per document (XADD).

AWS has no Redis destination; this one keeps AWS's failure-record format, as its S3 and Kafka destinations do,
**with the whole event** as `payload` (so that a record given up can be read back and replayed). Each entry has:

| field        | value                                                                                    |
| ------------ | ---------------------------------------------------------------------------------------- |
| `body`       | the JSON document: AWS's failure record (or, as a dead-letter queue, the event itself)  |
| `mapping`    | the mapping that gave up (where AWS names the event source mapping)                      |
| `lane`       | the lane the records came from (a shard, `topic-partition`, a queue)                     |
| `attributes` | as a dead-letter queue only: SQS-style message attributes, as JSON                       |

`send` returns once Redis has the entries (one MULTI/EXEC for a batch), or raises (the dispatcher retries with
backoff). `maxlen` trims the stream approximately (`MAXLEN ~`), so that a destination nobody reads does not grow
for ever; leave it unset to keep everything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.source import DestinationSpec, Document


class RedisDestinationConfig(BaseModel):
    """Append AWS's failure records (with the whole event) to a Redis stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["redis"]
    url: str = Field(
        "redis://localhost:6379/0",
        description="`redis://[user:password@]host:port/db`, `rediss://` for TLS (a password in it is a secret).",
    )
    password: SecretStr | None = Field(None, description="Password, when it is not in the URL.")
    stream: str = Field(description="The stream key the failure records are added to (XADD).")
    maxlen: int | None = Field(
        None, ge=1, description="Trim the stream to about this many entries (XADD MAXLEN ~). Default: keep all."
    )

    @model_validator(mode="after")
    def _one_password(self) -> RedisDestinationConfig:
        from urllib.parse import urlsplit

        if self.password is not None and urlsplit(self.url).password:
            raise ValueError("the password is given twice: in `url` and in `password`; keep one")
        return self


class RedisDestination:
    """XADD each document to the stream; a client made at first use, closed with the destination."""

    per_record = False
    includes_payload = True

    def __init__(self, config: RedisDestinationConfig) -> None:
        self.config = config
        self.name = f"redis:{config.stream}"
        self._client: Any = None

    def _connected(self) -> Any:
        if self._client is None:
            import redis.asyncio

            options: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 10}
            if self.config.password is not None:  # else the URL's own, if any
                options["password"] = self.config.password.get_secret_value()
            self._client = redis.asyncio.Redis.from_url(self.config.url, **options)
        return self._client

    async def send(self, documents: Sequence[Document]) -> None:
        """Add every document in one transaction; returns once Redis has them all."""
        if not documents:
            return
        client = self._connected()
        maxlen = self.config.maxlen
        try:
            async with client.pipeline(transaction=True) as pipe:
                for document in documents:
                    pipe.xadd(self.config.stream, entry(document), maxlen=maxlen, approximate=maxlen is not None)
                await pipe.execute()
        except BaseException:
            await self.close()  # a broken connection: start afresh at the next attempt
            raise

    async def close(self) -> None:
        """Close the client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def entry(document: Document) -> dict[str, str]:
    """The stream entry's fields for a document."""
    fields = {
        "body": json.dumps(document.body, separators=(",", ":"), default=str),
        "mapping": document.mapping,
        "lane": document.lane,
    }
    if document.attributes is not None:
        fields["attributes"] = json.dumps(document.attributes, separators=(",", ":"))
    return fields


def build(config: RedisDestinationConfig, region: str) -> RedisDestination:
    """The destination of a validated `{type: redis}` config (the region is not used)."""
    return RedisDestination(config)


def _inbox(config: RedisDestinationConfig, region: str, store: Any, mapping: str) -> Any:
    from connectors.redis_streams.failures import inbox

    return inbox(config, region, store, mapping)


DESTINATION = DestinationSpec(
    type="redis",
    config=RedisDestinationConfig,
    build=build,
    requires=("redis",),
    extra="redis",
    dead_letter=True,
    inbox=_inbox,
)
