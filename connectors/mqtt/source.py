"""The `mqtt` source: one unordered lane, the subscription (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from connectors.mqtt.acks import AckWindow, manual_acks
from connectors.mqtt.config import MqttConfig
from connectors.mqtt.events import iot_event
from hub.inbox import Inbox
from hub.records import Outcome, Record
from hub.source import SourceContext

RECORD_OVERHEAD = 64
SESSION_TAKEN_OVER = 0x8E


class MqttTlsError(ValueError):
    """A TLS setting that cannot be used (a missing file, a key that does not fit its certificate)."""


class MqttSource:
    """One unordered lane: the subscription. A record's position is (connection, arrival number)."""

    ordered = False

    def __init__(self, config: MqttConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.key = ",".join(config.subscriptions())
        self.where = f"{'mqtts' if config.uses_tls else 'mqtt'}://{config.host}:{config.port}"
        self.client_id = config.session_id(context.mapping, context.poller)
        self.receive_maximum = config.receive_maximum or max(100, 10 * max(1, context.max_in_flight))
        self._client: Any = None
        self._window: AckWindow | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._generation = 0
        self.inbox = Inbox(self.key, self.where)

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect with a persistent session and subscribe to the topic filters; messages arrive in the inbox, each
        acknowledged (PUBACK) only once it settles. Each open is a new connection: acks of an older one are not sent.
        """
        import aiomqtt

        config = self.config
        self.inbox.reset()
        self._generation += 1
        generation = self._generation
        source = self

        class Inbox(asyncio.Queue):  # type: ignore[type-arg]
            """aiomqtt's message queue (`queue_type`): each message becomes a record as it arrives, in order,
            including those a resumed session sends before the subscription is renewed."""

            def put_nowait(self, item: Any) -> None:
                source._on_message(item, generation)

        user, password = config.login()
        client = aiomqtt.Client(
            config.host,
            config.port,
            username=user,
            password=password,
            identifier=self.client_id,
            queue_type=Inbox,
            keepalive=round(config.keepalive),
            timeout=config.connect_timeout,
            tls_context=self._ssl_context() if config.uses_tls else None,
            logger=logging.getLogger("hub.source.mqtt.client"),
            **self._session_options(),
        )
        # before the connection: a resumed session's messages may arrive right after CONNACK
        self._window = AckWindow(manual_acks(client), ordered=config.puback_order == "received")
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            # a connection the broker closes before its CONNACK (a TLS handshake it refused) ends at the timeout;
            # the client library's log line before this one says why
            raise ConnectionError(f"connecting to {self.where} as {self.client_id!r} failed: {exc}") from exc
        self._client = client
        await self._subscribe(client)
        self._watcher = asyncio.ensure_future(self._watch(client, generation))
        self.context.log.info(
            "subscribed to %s on %s as %s (MQTT %s, QoS 1%s)",
            self.key,
            self.where,
            self.client_id,
            config.protocol,
            f", receive maximum {self.receive_maximum}" if config.protocol == "5" else "",
            extra={"fields": {"mapping": self.context.mapping}},
        )

    def _session_options(self) -> dict[str, Any]:
        """A persistent session: MQTT 5 clean_start=0 with a Session Expiry Interval (and our Receive Maximum),
        MQTT 3.1.1 clean_session=0."""
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self.config.protocol == "3.1.1":
            return {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = round(self.config.session_expiry)
        properties.ReceiveMaximum = self.receive_maximum
        return {"protocol": aiomqtt.ProtocolVersion.V5, "clean_start": False, "properties": properties}

    async def _subscribe(self, client: Any) -> None:
        """Subscribe every filter at QoS 1 (again, on a resumed session: it replaces the same subscription). MQTT 5
        asks for no retained messages (Retain Handling 2): an IoT rule sees publishes, never a replay."""
        from paho.mqtt.subscribeoptions import SubscribeOptions

        filters = self.config.subscriptions()
        if self.config.protocol == "5":
            wanted: list[tuple[str, Any]] = [(f, SubscribeOptions(qos=1, retainHandling=2)) for f in filters]
        else:
            wanted = [(f, 1) for f in filters]
        granted = await client.subscribe(wanted, timeout=self.config.connect_timeout)
        refused = [f"{f} ({_code_text(code)})" for f, code in zip(filters, granted, strict=False) if _refused(code)]
        if refused:
            raise PermissionError(f"{self.where} refused the subscription to {', '.join(refused)}")

    async def _watch(self, client: Any, generation: int) -> None:
        """Wait for the connection to end: aiomqtt's message iterator yields nothing here (the Inbox takes every
        message) and raises once the connection is lost."""
        try:
            async for _ in client.messages:
                pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if generation == self._generation:
                cause = exc.__cause__ or exc
                hint = ""
                if getattr(getattr(cause, "rc", None), "value", None) == SESSION_TAKEN_OVER:
                    hint = ": another client connected with the same client id (give each hub its own)"
                # named, since a broker such as mosquitto drops a client for another with its id without a word
                self._end(ConnectionError(f"the connection of client id {self.client_id!r} was lost: {cause}{hint}"))

    async def lanes(self) -> AsyncIterator[MqttSource]:
        """Its one unordered lane (itself), until the connection ends; raises the connection's error when the broker
        dropped it, so that the mapping reconnects."""
        yield self
        await self.inbox.ended.wait()
        if (failure := self.inbox.failure) is not None:
            raise failure

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """One message per invocation (batch_size is 1 for asynchronous sources): the message's event."""
        if len(records) != 1:
            raise ValueError(f"an IoT rule invokes a function once per message, not for {len(records)}")
        return records[0].payload

    async def close(self) -> None:
        """Messages without a PUBACK stay in the broker's session and come again on the next connection."""
        self.inbox.close()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        client, self._client, self._window = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):  # already gone is as good as closed
                await client.__aexit__(None, None, None)

    def _end(self, exc: BaseException) -> None:
        """The connection is gone: reads and lanes() raise, and the mapping reopens the source."""
        self.inbox.end(exc)

    # ---- Lane ------------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` received messages; [] when `timeout` passed; LaneEnded once closed (see hub.inbox)."""
        return await self.inbox.read(limit, timeout)

    async def settle(self, outcome: Outcome) -> None:
        """PUBACK what settled (in arrival order, or at once: `puback_order`). A failed message has no PUBACK and
        MQTT has no negative one: the connection is reopened, and the broker sends it again on the new one."""
        window = self._window
        if window is None or self.inbox.lost is not None:
            return  # the connection is gone: the broker sends every message without a PUBACK again
        generation = self._generation
        for record in outcome.settled:
            sent_on, seq = _position(record)
            if sent_on == generation:
                window.settle(seq)
        if outcome.failed and any(_position(record)[0] == generation for record in outcome.failed):
            self._end(ConnectionError("a message failed without a final outcome: reconnecting for its redelivery"))

    # ---- records ---------------------------------------------------------------------------------------------

    def _on_message(self, message: Any, generation: int) -> None:
        window = self._window
        if generation != self._generation or self.inbox.closed.is_set() or window is None:
            return  # a late message of an old connection: without its PUBACK, the broker sends it again
        seq = window.received(message.mid, message.qos)
        if message.retain:
            window.settle(seq)  # a retained message replayed at subscription (MQTT 3.1.1): not an event
            return
        payload: bytes = message.payload if isinstance(message.payload, bytes) else bytes(message.payload or b"")
        topic: str = message.topic.value
        event = iot_event(payload, topic, self.config.topic_key)
        self.inbox.put(
            Record(
                self.key,
                (generation, seq),
                event,
                timestamp=time.time(),  # MQTT carries no publish time: an event's age counts from its arrival
                size=RECORD_OVERHEAD + len(topic) + (len(payload) * 4) // 3,
            )
        )

    def _ssl_context(self) -> ssl.SSLContext:
        """The system's CAs unless ssl_cafile is set; host names checked; an error names the file."""
        config = self.config
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(config, name)
            if path is not None and not os.path.isfile(path):
                raise MqttTlsError(f"{name} {path!r} is not a file")
        try:
            context = ssl.create_default_context(cafile=config.ssl_cafile)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise MqttTlsError(f"ssl_cafile {config.ssl_cafile!r} holds no PEM CA certificate ({exc})") from exc
        if config.ssl_certfile is not None:
            key = config.ssl_keyfile or config.ssl_certfile

            def no_password() -> str:
                raise MqttTlsError(f"the private key in {key!r} is encrypted: set ssl_password")

            password = config.ssl_password.get_secret_value() if config.ssl_password else no_password
            try:
                context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, password)
            except (OSError, ValueError) as exc:
                raise MqttTlsError(
                    f"cannot use the client certificate in ssl_certfile {config.ssl_certfile!r} with the key in "
                    f"{key!r} ({exc})"
                ) from exc
        return context


def _position(record: Record) -> tuple[int, int]:
    """(connection number, arrival number) of a record of this source."""
    position: tuple[int, int] = record.position  # type: ignore[assignment]
    return position


def _refused(code: Any) -> bool:
    """A SUBACK return code that refuses: 0x80 and above (MQTT 3.1.1's 128, MQTT 5's reason codes)."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80


def _code_text(code: Any) -> str:
    return str(code) if hasattr(code, "value") else f"return code {code}"
