"""The configuration of the `rabbitmq` connector."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.types import Duration


class RabbitMQConfig(BaseModel):
    """Consume one RabbitMQ queue; each message is one record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["rabbitmq"]
    url: str = Field(
        "amqp://localhost:5672/", description="`amqp://[user:password@]host:port/vhost`, or `amqps://` for TLS."
    )
    username: str | None = Field(None, description="User, when it is not in the URL (default: guest).")
    password: SecretStr | None = Field(None, description="Password, when it is not in the URL.")
    queue: str = Field(min_length=1, description="The queue to consume.")
    virtual_host: str | None = Field(None, description="The virtual host. Default: the URL's, else `/`.")
    prefetch: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Most unacked messages at once (basic.qos). Default: 100 x max_concurrency; keep it at least "
        "batch_size x max_concurrency.",
    )
    declare: bool = Field(
        False,
        description="Declare the queue (durable, with `queue_arguments`) if missing. Default: it must exist "
        "(a passive declare checks it).",
    )
    queue_arguments: dict[str, Any] = Field(
        default_factory=dict, description="Arguments when `declare` is on, e.g. {x-queue-type: quorum}."
    )
    redelivery_delay: Duration = Field(
        1.0, ge=0, le=3600, description="How long a failed message stays out of the queue before it is returned."
    )
    delivery_limit: int | None = Field(
        None,
        ge=1,
        description="Reject (no requeue) a message that failed this many deliveries, so the queue's dead-letter "
        "exchange takes it. Default: return failed messages forever (or until max_receive_count with a "
        "destination).",
    )
    connect_timeout: Duration = Field(10.0, gt=0, description="Longest wait for the connection and channel.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("amqp", "amqps"):
            raise ValueError("use amqp://host:port/vhost or amqps://host:port/vhost")
        return value

    @model_validator(mode="after")
    def _once(self) -> RabbitMQConfig:
        parts = urlsplit(self.url)
        if self.password is not None and parts.password:
            raise ValueError("the password is given twice: in `url` and in `password`; keep one")
        if self.username is not None and parts.username:
            raise ValueError("the user is given twice: in `url` and in `username`; keep one")
        if self.queue_arguments and not self.declare:
            raise ValueError("queue_arguments apply only with `declare: true`")
        return self

    def vhost(self) -> str:
        """The virtual host: `virtual_host`, else the URL's path, else `/`."""
        if self.virtual_host is not None:
            return self.virtual_host
        path = urlsplit(self.url).path
        return "/" if path in ("", "/") else unquote(path[1:])

    def login(self) -> str:
        """The user name: `username`, else the URL's, else `guest`."""
        return self.username or unquote(urlsplit(self.url).username or "") or "guest"

    def connection_url(self) -> str:
        """The URL to connect with: credentials and virtual host filled in. Never log it."""
        parts = urlsplit(self.url)
        password = self.password.get_secret_value() if self.password else unquote(parts.password or "") or "guest"
        host = parts.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        vhost = self.vhost()
        path = "/" if vhost == "/" else "/" + quote(vhost, safe="")
        query = f"?{parts.query}" if parts.query else ""
        return f"{parts.scheme}://{quote(self.login(), safe='')}:{quote(password, safe='')}@{host}:{port}{path}{query}"
