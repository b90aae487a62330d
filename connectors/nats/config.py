"""The configuration of the `nats` connector: where the servers are, how to log in, and the durable consumer."""

from __future__ import annotations

import re
import ssl
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.source import MappingFacts, SettingError
from hub.types import Duration

_NOT_IN_NAMES = re.compile(r"[^\x21-\x7e]|[.*>/\\]")
"""What NATS refuses in a stream or consumer name: whitespace and control characters, `.`, `*`, `>` and path
separators (names become subject tokens and file names on the server)."""
_SUBJECT = re.compile(r"^[^\s.]+(\.[^\s.]+)*$")


def durable_name(mapping: str) -> str:
    """The default consumer name of a mapping: its name, with each character NATS refuses in a name made `-`."""
    return _NOT_IN_NAMES.sub("-", mapping) or "hub"


def _name(what: str, value: str) -> str:
    if not value or _NOT_IN_NAMES.search(value):
        raise ValueError(f"{value!r} is not a valid {what} name: no spaces, `.`, `*`, `>`, `/` or `\\`")
    return value


class NatsConfig(BaseModel):
    """Read a NATS JetStream stream through a durable pull consumer; each message is one record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["nats"]
    servers: str | list[str] = Field(
        "nats://localhost:4222",
        description="The server's URL, or the URLs of one cluster (tried in order): `nats://host:4222`, or "
        "`tls://host:4222` for TLS. Credentials go in `user`/`password`, `token` or `creds`, never in a URL.",
    )
    user: str | None = Field(None, description="User name (with `password`).")
    password: SecretStr | None = Field(None, description="Password of `user` (never printed).")
    token: SecretStr | None = Field(None, description="An authentication token, instead of a user (never printed).")
    creds: str | None = Field(
        None,
        description="A `.creds` file (a user JWT and its NKey seed, as `nsc` writes it), for decentralised "
        "authentication; instead of a user or a token.",
    )
    tls_ca_file: str | None = Field(
        None, description="PEM CA certificates to verify the server with. Default: the system's. Turns TLS on."
    )
    tls_cert_file: str | None = Field(None, description="PEM client certificate, for mutual TLS. Turns TLS on.")
    tls_key_file: str | None = Field(None, description="PEM private key of `tls_cert_file` (default: in that file).")
    stream: str = Field(description="The JetStream stream to read (it must exist).")
    consumer: str | None = Field(
        None,
        description="The durable pull consumer's name. Default: the mapping's name, with each space, `.`, `*`, `>`, "
        "`/` or `\\` made `-`. Every hub that reads with the same name shares the messages (each gets some).",
    )
    create_consumer: bool = Field(
        True,
        description="Create the consumer (with the settings below) when it is missing. false: it must exist (made "
        "with the nats CLI, say). An existing consumer is used as it is: it keeps its position.",
    )
    filter_subject: str | list[str] | None = Field(
        None,
        description="Read only messages on these subjects (wildcards `*` and `>` allowed): one subject, or a list "
        "(a list of more than one needs nats-server 2.10). Default: every message of the stream.",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        "TRIM_HORIZON",
        description="Where a new consumer starts: every message in the stream (deliver policy `all`), or only "
        "messages published after it is created (`new`). An existing consumer keeps its position.",
    )
    ack_wait: Duration = Field(
        30.0,
        ge=1,
        le=43200,
        description="A new consumer's ack wait: a message neither acked nor reported in progress for this long is "
        "delivered again (SQS's visibility timeout). The hub reports every message it holds in progress every third "
        "of it, so a slow function keeps its messages; a hub that dies loses them to the others after it.",
    )
    max_deliver: int | None = Field(
        None,
        ge=2,
        description="A new consumer's MaxDeliver: JetStream stops delivering a message after this many deliveries. "
        "Needs `max_receive_count` below it and a `destination_config.on_failure`, so that a message that keeps "
        "failing reaches the destination before JetStream gives up on it; an existing consumer's must be the same. "
        "Default: unlimited (the hub's `max_receive_count` decides).",
    )
    max_ack_pending: int | None = Field(
        None,
        ge=1,
        description="A new consumer's MaxAckPending: most messages delivered and not acked at once, over every hub "
        "that shares it. Default: the server's (1,000).",
    )
    prefetch: int | None = Field(
        None,
        ge=1,
        le=100000,
        description="Most messages this process asks for ahead of the function (read, not yet handed to a batch). "
        "Default: batch_size x max_concurrency.",
    )
    pull_wait: Duration = Field(
        5.0,
        ge=0.5,
        le=300,
        description="How long one pull request waits on the server for messages (its `expires`); a new one is sent "
        "before it runs out. A server silent for longer than this plus 5s counts as gone.",
    )
    connect_timeout: Duration = Field(
        5.0, gt=0, le=300, description="Longest wait for the connection and for each JetStream API request."
    )

    @field_validator("servers")
    @classmethod
    def _urls(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls:
            raise ValueError("give at least one server URL")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise ValueError(f"{url!r}: use nats://host:port or tls://host:port")
            if parts.username or parts.password:
                raise ValueError("no credentials in server URLs: use user and password, token or creds")
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        return _name("stream", value)

    @field_validator("consumer")
    @classmethod
    def _consumer(cls, value: str | None) -> str | None:
        return None if value is None else _name("consumer", value)

    @field_validator("filter_subject")
    @classmethod
    def _subjects(cls, value: str | list[str] | None) -> str | list[str] | None:
        subjects = [] if value is None else [value] if isinstance(value, str) else value
        if value is not None and not subjects:
            raise ValueError("give a subject, or a list of subjects")
        for subject in subjects:
            if not _SUBJECT.match(subject):
                raise ValueError(f"{subject!r} is not a subject: tokens separated by single dots, no spaces")
        if len(set(subjects)) != len(subjects):
            raise ValueError("a subject is given twice")
        return value

    @model_validator(mode="after")
    def _one_login(self) -> NatsConfig:
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        ways = [name for name in ("user", "token", "creds") if getattr(self, name) is not None]
        if len(ways) > 1:
            raise ValueError(f"log in one way: {' or '.join(ways)}, not both")
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_key_file goes with tls_cert_file")
        return self

    # ---- what the source needs -------------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """The server URLs as a list, whichever form they were written in."""
        return [self.servers] if isinstance(self.servers, str) else list(self.servers)

    @property
    def subjects(self) -> list[str]:
        """The consumer's filter subjects as a list ([] for the whole stream)."""
        value = self.filter_subject
        return [] if value is None else [value] if isinstance(value, str) else list(value)

    @property
    def tls(self) -> bool:
        """Whether to connect with TLS: a TLS file is set, or a server URL's scheme is `tls`."""
        files = (self.tls_ca_file, self.tls_cert_file)
        return any(f is not None for f in files) or any(urlsplit(u).scheme == "tls" for u in self.urls)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client's TLS context (host names checked), or None without TLS. Raises naming a file it cannot use."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"tls_ca_file {self.tls_ca_file!r}: {exc}") from exc
        if self.tls_cert_file is not None:
            try:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
            except (OSError, ValueError) as exc:
                raise ValueError(f"tls_cert_file {self.tls_cert_file!r}: {exc}") from exc
        return context

    def login(self) -> dict[str, Any]:
        """nats-py's connect options for the credentials. Never log them."""
        if self.user is not None and self.password is not None:
            return {"user": self.user, "password": self.password.get_secret_value()}
        if self.token is not None:
            return {"token": self.token.get_secret_value()}
        if self.creds is not None:
            return {"user_credentials": self.creds}
        return {}

    def public_server(self) -> str:
        """The first server as `scheme://host:port` (for logs and the event's ARN)."""
        parts = urlsplit(self.urls[0])
        host = parts.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        return f"{parts.scheme}://{host}:{parts.port or 4222}"


def check_mapping(source: NatsConfig, mapping: MappingFacts) -> None:
    """A mapping with `max_deliver` must give a message up to its destination before JetStream stops delivering it:
    `max_receive_count` below `max_deliver`, and an on_failure destination (hub.source.ConnectorSpec.check)."""
    limit = source.max_deliver
    if limit is None:
        return
    count = mapping.max_receive_count
    if count is not None and count < limit and mapping.has_destination:
        return
    raise SettingError(
        ("max_deliver",),
        f"JetStream stops delivering a message after {limit} deliveries, and a message that fails them all would "
        f"vanish without reaching a destination: set max_receive_count to at most {limit - 1} with a "
        "destination_config.on_failure, or leave max_deliver unset (unlimited)",
    )
