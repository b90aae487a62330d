"""Configuration models of the Kafka source and destination, the aiokafka options they translate to, and what a
refused SASL login or a failed TLS connection means for them.

aiokafka is imported only inside functions, so validating a configuration never imports it.
"""

from __future__ import annotations

import os
import re
import ssl
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.types import Duration

_GROUP_ID = re.compile(r"^[a-zA-Z0-9\-/*:_+=.@]{1,200}$")
_NOT_IN_GROUP_ID = re.compile(r"[^a-zA-Z0-9\-/*:_+=.@]")
_MSK_ARN = re.compile(r"^arn:aws[a-z-]*:kafka:[a-z0-9-]+:[0-9]{12}:(cluster|vpc-connection)/\S+$")


def group_id_for(mapping: str) -> str:
    """The consumer group of a mapping that names none: stable across restarts, unique per mapping name."""
    return ("hub-" + _NOT_IN_GROUP_ID.sub("_", mapping))[:200]


def _servers(value: str | list[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    servers = [s.strip() for s in items if s.strip()]
    if not servers:
        raise ValueError("at least one host:port is needed")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{server!r} is not host:port")
    return servers


class KafkaConnection(BaseModel):
    """Where the cluster is and how to authenticate: shared by the source and the destination."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str | list[str] = Field(
        description="Bootstrap brokers: `host:port`, a comma-separated string of them, or a list."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers (Kafka's `security.protocol`)."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None,
        description="SASL mechanism for SASL_PLAINTEXT/SASL_SSL: PLAIN (AWS's BASIC_AUTH), SCRAM-SHA-256 or "
        "SCRAM-SHA-512 (AWS's SASL_SCRAM_256_AUTH/SASL_SCRAM_512_AUTH).",
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never printed).")
    ssl_cafile: str | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates (AWS's SERVER_ROOT_CA_CERTIFICATE)."
    )
    ssl_certfile: str | None = Field(
        None, description="PEM client certificate chain for mutual TLS (AWS's CLIENT_CERTIFICATE_TLS_AUTH)."
    )
    ssl_keyfile: str | None = Field(None, description="PEM private key of the client certificate.")
    ssl_password: SecretStr | None = Field(None, description="Password of the client private key (never printed).")

    @field_validator("bootstrap_servers")
    @classmethod
    def _check_servers(cls, value: str | list[str]) -> str | list[str]:
        _servers(value)
        return value

    @model_validator(mode="after")
    def _check_security(self) -> KafkaConnection:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        sasl_set = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, n) is not None]
        if sasl:
            missing = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if n not in sasl_set]
            if missing:
                raise ValueError(f"security_protocol {self.security_protocol} needs {', '.join(missing)}")
        elif sasl_set:
            raise ValueError(f"{', '.join(sasl_set)}: only used with security_protocol SASL_PLAINTEXT or SASL_SSL")
        ssl_set = [
            n for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password") if getattr(self, n) is not None
        ]
        if ssl_set and not tls:
            raise ValueError(f"{', '.join(ssl_set)}: only used with security_protocol SSL or SASL_SSL")
        if (self.ssl_keyfile or self.ssl_password) and not self.ssl_certfile:
            raise ValueError("ssl_keyfile and ssl_password go with ssl_certfile")
        return self

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list, whichever form they were written in."""
        return _servers(self.bootstrap_servers)


class KafkaConfig(KafkaConnection):
    """Consume a Kafka topic as a consumer-group member, as Lambda's self-managed Kafka or Amazon MSK event source
    does."""

    type: Literal["kafka"] = Field(description="A Kafka topic read by a consumer group.")
    topic: str | list[str] = Field(
        description="The topic to consume (AWS allows exactly one; a list of topics is an extension of the hub)."
    )
    cluster_arn: str | None = Field(
        None,
        description='Set for an Amazon MSK cluster: events take MSK\'s form (`eventSource: "aws:kafka"`, this ARN '
        "as `eventSourceArn`, also in `KafkaBatchInfo`). Unset: self-managed Kafka's (`eventSource: "
        '"SelfManagedKafka"`, no ARN). `arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>`.',
    )
    consumer_group_id: str | None = Field(
        None,
        description="Consumer group to join. If the group has committed offsets they win over starting_position. "
        "Default: `hub-<mapping name>`, stable across restarts.",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = Field(
        description="Where a partition without a committed offset starts: the oldest record (TRIM_HORIZON), just "
        "after the newest (LATEST) or the first record at or after starting_position_timestamp (AT_TIMESTAMP). The "
        "position found is committed at once, so a restart before the first record still starts there."
    )
    starting_position_timestamp: datetime | None = Field(
        None, description="With AT_TIMESTAMP: an ISO date-time or Unix seconds, not in the future."
    )
    max_partition_fetch_bytes: int = Field(
        1 << 20,
        ge=1024,
        le=1 << 30,
        description="Most bytes one fetch returns per partition (Kafka's max.partition.fetch.bytes); a record "
        "larger than this is still returned, alone.",
    )
    max_buffered_records: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        description="Records read ahead per partition; a partition whose buffer holds this many is paused until "
        "its lane has taken half of them (back-pressure). A fetch in flight can add one fetch's worth on top.",
    )
    fetch_max_wait: Duration = Field(
        0.5,
        ge=0.001,
        le=60,
        description="Longest time the broker may hold a fetch waiting for data (Kafka's fetch.max.wait.ms): lower "
        "it for latency on brokers that do not answer a waiting fetch as soon as data arrives.",
    )
    session_timeout: Duration = Field(
        10.0, ge=1, le=300, description="The group drops this process after this long without a heartbeat."
    )
    rebalance_grace: Duration = Field(
        5.0,
        ge=0,
        le=240,
        description="On a rebalance, how long batches in flight on a revoked partition may settle before what "
        "settled is committed and the partition is handed over (the rest is delivered again by the new owner).",
    )
    client_id: str = Field("eventhub", description="Client id the brokers see in their logs and quotas.")

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str | list[str]) -> str | list[str]:
        topics = [value] if isinstance(value, str) else value
        if not topics:
            raise ValueError("at least one topic is needed")
        for topic in topics:
            if not re.fullmatch(r"[a-zA-Z0-9._\-]{1,249}", topic):
                raise ValueError(f"{topic!r} is not a Kafka topic name (letters, digits, `.`, `_`, `-`)")
        if len(set(topics)) != len(topics):
            raise ValueError("a topic is listed twice")
        return value

    @field_validator("cluster_arn")
    @classmethod
    def _check_cluster_arn(cls, value: str | None) -> str | None:
        if value is not None and not _MSK_ARN.match(value):
            raise ValueError("an MSK cluster ARN: arn:aws:kafka:<region>:<account id>:cluster/<name>/<uuid>")
        return value

    @field_validator("consumer_group_id")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP_ID.match(value):
            raise ValueError("1 to 200 characters of letters, digits and - / * : _ + = . @")
        return value

    @model_validator(mode="after")
    def _check_start(self) -> KafkaConfig:
        when = self.starting_position_timestamp
        if self.starting_position == "AT_TIMESTAMP":
            if when is None:
                raise ValueError("starting_position AT_TIMESTAMP needs starting_position_timestamp")
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
                object.__setattr__(self, "starting_position_timestamp", when)
            if when > datetime.now(UTC):
                raise ValueError("starting_position_timestamp is in the future")
        elif when is not None:
            raise ValueError("starting_position_timestamp goes with starting_position AT_TIMESTAMP")
        return self

    @property
    def topics(self) -> list[str]:
        """The topics as a list, whichever form they were written in."""
        return [self.topic] if isinstance(self.topic, str) else list(self.topic)


class KafkaDestinationConfig(KafkaConnection):
    """Send each given-up record to a Kafka topic (AWS's `kafka://<topic>` on-failure destination), keyed by the
    original record's key."""

    type: Literal["kafka"] = Field(description="Failure records go to a Kafka topic.")
    topic: str = Field(description="The topic that receives the failure records (not a topic the mapping reads).")
    send_timeout: Duration = Field(
        30.0, gt=0, le=600, description="Longest wait for the brokers to acknowledge a record (acks=all)."
    )
    client_id: str = Field("eventhub-destination", description="Client id the brokers see.")

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not re.fullmatch(r"[a-zA-Z0-9._\-]{1,249}", value):
            raise ValueError(f"{value!r} is not a Kafka topic name (letters, digits, `.`, `_`, `-`)")
        return value


def client_options(config: KafkaConnection) -> dict[str, Any]:
    """Keyword arguments for aiokafka's consumer, producer and admin client: servers and security. Raises
    KafkaTlsError, naming the setting, if a TLS file cannot be used."""
    options: dict[str, Any] = {
        "bootstrap_servers": config.servers,
        "security_protocol": config.security_protocol,
    }
    if config.sasl_mechanism is not None:
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username
        options["sasl_plain_password"] = config.sasl_password.get_secret_value() if config.sasl_password else None
    if config.security_protocol.endswith("SSL"):
        options["ssl_context"] = ssl_context(config)
    return options


def ssl_context(config: KafkaConnection) -> ssl.SSLContext:
    """aiokafka's client context (the system's CAs unless ssl_cafile is set; host names always checked), loaded a
    file at a time so that an error names the file; an encrypted key without ssl_password fails, where OpenSSL would
    prompt for a password on a terminal."""
    from aiokafka.helpers import create_ssl_context

    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(config, name)
        if path is not None and not os.path.isfile(path):
            raise KafkaTlsError(f"{name} {path!r} is not a file")
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=config.ssl_cafile)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise KafkaTlsError(f"ssl_cafile {config.ssl_cafile!r} holds no PEM CA certificate ({exc})") from exc
    if config.ssl_certfile is not None:
        key = config.ssl_keyfile or config.ssl_certfile

        def no_password() -> str:
            raise KafkaTlsError(f"the private key in {key!r} is encrypted: set ssl_password")

        password = config.ssl_password.get_secret_value() if config.ssl_password else no_password
        try:
            context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, password)
        except (OSError, ValueError) as exc:
            raise KafkaTlsError(
                f"cannot use the client certificate in ssl_certfile {config.ssl_certfile!r} with the key in {key!r} "
                f"({exc}): ssl_certfile is a PEM certificate chain, ssl_keyfile its PEM private key (unless "
                "ssl_certfile holds it) and ssl_password the key's password"
            ) from exc
    return context


class KafkaAuthenticationError(Exception):
    """The brokers refused the configured SASL login: retrying succeeds only once the credentials, the mechanism
    or the brokers' users change."""


class KafkaTlsError(Exception):
    """TLS with the brokers fails for a reason of configuration (a TLS file that cannot be used, a broker certificate
    that is not trusted or does not name the host, a client certificate missing or refused, TLS on one side only):
    retrying succeeds only once the ssl_* settings, security_protocol or the brokers' certificates change."""
