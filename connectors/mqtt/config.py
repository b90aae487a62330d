"""The configuration of the `mqtt` connector."""

from __future__ import annotations

import re
import socket
import zlib
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.types import Duration

SAFE_CLIENT_ID = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class MqttConfig(BaseModel):
    """Subscribe to MQTT topic filters (QoS 1, a persistent session); each message is one event, as an AWS IoT rule
    with a Lambda action sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["mqtt"]
    url: str = Field(
        "mqtt://localhost:1883",
        description="`mqtt://[user:password@]host:port` (default port 1883), or `mqtts://` for TLS (default port "
        "8883).",
    )
    username: str | None = Field(None, description="User, when it is not in the URL.")
    password: SecretStr | None = Field(None, description="Password, when it is not in the URL (never printed).")
    topics: list[str] = Field(
        min_length=1,
        description="Topic filters to subscribe to, as an IoT rule's `FROM` names them: `+` matches one level "
        "(`sensors/+/temperature`), `#` the rest (`sensors/#`); a single filter may be written as a string.",
    )
    shared_group: str | None = Field(
        None,
        description="MQTT 5 shared subscription: subscribe as `$share/<group>/<filter>`, so that the broker hands "
        "each message to one member of the group (several hubs, or `provisioned_poller_config` pollers, share the "
        "work). Default: every hub that subscribes gets every message.",
    )
    client_id: str | None = Field(
        None,
        description="The MQTT client id, which names the persistent session. Default: `eventhub-<mapping>` (with a "
        "`shared_group`: `eventhub-<mapping>-<hostname>`), so a restarted hub resumes its session. Pollers beyond "
        "the first add `-p<index>`. Two hubs must never share one: the broker would keep only the newest.",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description="MQTT version: `5` (session expiry, Receive Maximum, shared subscriptions) or `3.1.1` (a "
        "clean_session=false session, kept as long as the broker keeps sessions).",
    )
    session_expiry: Duration = Field(
        86400.0,
        ge=1,
        le=4294967294,
        description="MQTT 5: how long the broker keeps the session, and queues messages for it, while the hub is "
        "away (the Session Expiry Interval). MQTT 3.1.1 has none: the broker's own setting decides (mosquitto: "
        "`persistent_client_expiration`).",
    )
    receive_maximum: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="MQTT 5 Receive Maximum: most messages the broker sends without their PUBACK (read, in flight, "
        "waiting for an earlier one's PUBACK). Default: 10 x max_concurrency, at least 100. MQTT 3.1.1: the "
        "broker's own window decides (mosquitto: `max_inflight_messages`, default 20).",
    )
    puback_order: Literal["received", "settled"] = Field(
        "received",
        description="`received`: PUBACKs go out in the order the messages arrived, as the MQTT specification asks "
        "[MQTT-4.6.0-2], so a message in retry holds back the PUBACKs of later ones; `settled`: each message's "
        "PUBACK goes out as soon as it settles (brokers such as mosquitto and EMQX accept that).",
    )
    topic_key: str | None = Field(
        None,
        min_length=1,
        description='Add the message\'s topic to JSON object payloads (and to the `{"data": ...}` of binary ones) '
        "under this key, as an IoT rule's `SELECT *, topic() AS <key>` does. Default: the payload exactly as "
        "`SELECT *` sends it.",
    )
    keepalive: Duration = Field(
        60.0, ge=5, le=65535, description="MQTT keepalive: a broker that does not answer for 1.5 x this is gone."
    )
    connect_timeout: Duration = Field(10.0, gt=0, le=300, description="Longest wait for CONNACK and SUBACK.")
    tls: bool | None = Field(None, description="Connect with TLS. Default: true for `mqtts://`, false for `mqtt://`.")
    ssl_cafile: str | None = Field(
        None, description="PEM file of the CAs that sign the broker's certificate. Default: the system's CAs."
    )
    ssl_certfile: str | None = Field(None, description="PEM client certificate, for brokers that ask for one.")
    ssl_keyfile: str | None = Field(None, description="PEM private key of the client certificate.")
    ssl_password: SecretStr | None = Field(None, description="Password of the client private key (never printed).")

    @field_validator("topics", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("topics")
    @classmethod
    def _filters(cls, value: list[str]) -> list[str]:
        for topic in value:
            check_filter(topic)
        if len(set(value)) != len(value):
            raise ValueError("a topic filter is listed twice")
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("use mqtt://host:port or mqtts://host:port")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("an MQTT URL has no path or query: mqtt://host:port")
        return value

    @field_validator("shared_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/+#")):
            raise ValueError("a share name is not empty and has no `/`, `+` or `#`")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not 1 <= len(value.encode()) <= 65535:
            raise ValueError("a client id is 1 to 65535 bytes")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        parts = urlsplit(self.url)
        if self.password is not None and parts.password:
            raise ValueError("the password is given twice: in `url` and in `password`; keep one")
        if self.username is not None and parts.username:
            raise ValueError("the user is given twice: in `url` and in `username`; keep one")
        if self.shared_group is not None and self.protocol != "5":
            raise ValueError("shared_group needs protocol 5 (shared subscriptions are MQTT 5's)")
        if self.receive_maximum is not None and self.protocol != "5":
            raise ValueError("receive_maximum is MQTT 5's: with 3.1.1 the broker's window decides")
        tls_set = [n for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password") if getattr(self, n)]
        if tls_set and not self.uses_tls:
            raise ValueError(f"{', '.join(tls_set)}: only used with TLS (mqtts:// or tls: true)")
        if (self.ssl_keyfile or self.ssl_password) and not self.ssl_certfile:
            raise ValueError("ssl_keyfile and ssl_password go with ssl_certfile")
        return self

    # ---- derived values ------------------------------------------------------------------------------------------

    @property
    def uses_tls(self) -> bool:
        """Whether to connect with TLS: `tls`, else whether the URL's scheme is `mqtts`."""
        return self.tls if self.tls is not None else urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        """The broker's host name, from the URL."""
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        """The broker's port: the URL's, else the scheme's default."""
        return urlsplit(self.url).port or DEFAULT_PORTS[urlsplit(self.url).scheme]

    def login(self) -> tuple[str | None, str | None]:
        """(user, password) to connect with, from the settings or the URL. Never log the password."""
        parts = urlsplit(self.url)
        user = self.username if self.username is not None else unquote(parts.username) if parts.username else None
        if self.password is not None:
            return user, self.password.get_secret_value()
        return user, unquote(parts.password) if parts.password else None

    def subscriptions(self) -> list[str]:
        """The filters as subscribed: `$share/<group>/<filter>` with a shared group."""
        if self.shared_group is None:
            return list(self.topics)
        return [f"$share/{self.shared_group}/{topic}" for topic in self.topics]

    def session_id(self, mapping: str, poller: int = 1) -> str:
        """The client id: the configured one, else one derived from the mapping's name (and, for a shared group,
        the host's), stable across restarts so the broker resumes the session; `-p<index>` for pollers 2..N."""
        base = self.client_id
        if base is None:
            parts = [mapping] if self.shared_group is None else [mapping, socket.gethostname()]
            base = "eventhub-" + "-".join(parts)
            if not SAFE_CLIENT_ID.match(base):
                # brokers must accept [0-9a-zA-Z] ids; keep a readable part and a checksum of the whole name
                readable = re.sub(r"[^0-9A-Za-z_.-]", "_", base)[:48]
                base = f"{readable}-{zlib.crc32(base.encode()):08x}"
        return base if poller <= 1 else f"{base}-p{poller}"


def check_filter(topic: str) -> None:
    """Raise ValueError unless `topic` is a valid MQTT topic filter ([MQTT-4.7.1]): `#` alone as the last level,
    `+` alone in its level, no NUL; a shared subscription is written with `shared_group`, not `$share/`."""
    if not topic:
        raise ValueError("a topic filter is not empty")
    if "\x00" in topic:
        raise ValueError(f"{topic!r}: a topic filter has no NUL character")
    if len(topic.encode()) > 65535:
        raise ValueError("a topic filter is at most 65535 bytes")
    if topic.startswith("$share/"):
        raise ValueError(f"{topic!r}: write the group as `shared_group` and the filter alone")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"{topic!r}: `#` stands alone, as the last level (`sensors/#`)")
        if "+" in level and level != "+":
            raise ValueError(f"{topic!r}: `+` stands alone in its level (`sensors/+/temperature`)")
