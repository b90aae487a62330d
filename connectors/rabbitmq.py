"""`rabbitmq`: a RabbitMQ queue (AMQP 0-9-1, aio-pika), delivered as Amazon MQ for RabbitMQ delivers to Lambda.

| settle   | meaning for RabbitMQ                                                                               |
| -------- | -------------------------------------------------------------------------------------------------- |
| success  | basic.ack (also for given-up records, which the destination already took, and filtered ones)        |
| failure  | after `redelivery_delay` the message returns to the queue: nack+requeue, or a counted copy (below)  |
| ordering | none (one unordered lane; a returned message is delivered again after newer ones may have been)    |

Delivery counts (the record's attempt, which the dispatcher compares with `max_receive_count`): quorum queues
count deliveries themselves (`x-delivery-count`), and a failed message is returned with basic.nack(requeue).
Classic queues count nothing (only the `redelivered` flag), so a failed message from one is returned as a copy
published to the tail of the queue with the header `x-hub-receive-count` (the deliveries so far), and the
original is acked once the broker confirmed the copy: a crash in between duplicates it, never loses it.

`prefetch` bounds what is unacked (read, in flight or waiting for `redelivery_delay`). With `delivery_limit`, a
message that failed that many deliveries is rejected without requeue, so the queue's own dead-letter exchange
takes it (or the broker drops it if there is none): the broker-side counterpart of `max_receive_count` with a
destination. The event shape is AWS's `aws:rmq` one: `rmqMessagesByQueue` keyed `queue::vhost`; headers are
always an object (`{}` when none). Partial batch responses, which Amazon MQ lacks, name a message by its
`basicProperties.messageId` (a message without one can only fail with its whole batch).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import decimal
import functools
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.records import Outcome, Record, data_view
from hub.source import ConnectorSpec, LaneEnded, SourceContext
from hub.types import Duration

COUNT_HEADER = "x-hub-receive-count"
"""Deliveries of the earlier copies of a message that the hub returned to a classic queue by republishing it."""
BROKER_COUNT_HEADER = "x-delivery-count"
RECORD_OVERHEAD = 400


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
        if self.virtual_host is not None:
            return self.virtual_host
        path = urlsplit(self.url).path
        return "/" if path in ("", "/") else unquote(path[1:])

    def login(self) -> str:
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


def amqp_timestamp(when: datetime) -> str:
    """AWS's rendering of an AMQP timestamp (Java's medium date format, UTC): `Jan 1, 1970, 12:33:41 AM`."""
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    hour = when.hour % 12 or 12
    return f"{when:%b} {when.day}, {when.year}, {hour}:{when:%M:%S} {'AM' if when.hour < 12 else 'PM'}"


def header_value(value: Any) -> Any:
    """A header value as AWS renders it: strings as `{"bytes": [...]}`, numbers and booleans as they are."""
    if isinstance(value, str):
        return {"bytes": list(value.encode("utf-8"))}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": list(bytes(value))}
    if isinstance(value, dict):
        return {str(k): header_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [header_value(v) for v in value]
    if isinstance(value, datetime):
        return amqp_timestamp(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def delivery_count(headers: dict[str, Any], redelivered: bool) -> int:
    """Deliveries of a message so far, this one included."""
    earlier = _int(headers.get(COUNT_HEADER))
    if BROKER_COUNT_HEADER in headers:  # quorum queues count earlier deliveries themselves
        return earlier + _int(headers[BROKER_COUNT_HEADER]) + 1
    return earlier + (2 if redelivered else 1)


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


class RabbitMQSource:
    """One unordered lane: the queue."""

    ordered = False

    def __init__(self, config: RabbitMQConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self.vhost = config.vhost()
        self.key = f"{config.queue}::{self.vhost}"
        parts = urlsplit(config.url)
        host, port = parts.hostname or "localhost", parts.port or (5671 if parts.scheme == "amqps" else 5672)
        self.where = f"{parts.scheme}://{host}:{port}"
        self.arn = f"arn:aws:mq:{context.region}:{context.account_id}:broker:{host}:{port}"
        self.prefetch = config.prefetch or 100 * max(1, context.max_in_flight)
        self._connection: Any = None
        self._channel: Any = None
        self._queue: Any = None
        self._generation = 0
        self._messages: asyncio.Queue[Record | None] = asyncio.Queue()
        self._unacked: dict[Hashable, Any] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}  # failed messages waiting for redelivery_delay
        self._returning: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self._ended = asyncio.Event()
        self._lost: BaseException | None = None

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        import aio_pika

        self._closed.clear()
        self._ended.clear()
        self._lost = None
        self._generation += 1
        self._messages = asyncio.Queue()
        timeout = self.config.connect_timeout
        self._connection = await aio_pika.connect(self.config.connection_url(), timeout=timeout)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        channel.close_callbacks.add(self._on_channel_closed)
        await channel.set_qos(prefetch_count=self.prefetch, timeout=timeout)
        self._queue = await channel.declare_queue(
            self.config.queue,
            passive=not self.config.declare,
            durable=True,
            arguments=self.config.queue_arguments or None,
            timeout=timeout,
        )
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._on_consumer_cancelled)
        generation = self._generation
        # a partial of a coroutine function: aio-pika runs it as a task (a lambda would never be awaited)
        await self._queue.consume(functools.partial(self._on_message, generation=generation), timeout=timeout)
        self.context.log.info(
            "consuming %s on %s (prefetch %d)",
            self.key,
            self.where,
            self.prefetch,
            extra={"fields": {"mapping": self.context.mapping}},
        )

    async def lanes(self) -> AsyncIterator[RabbitMQSource]:
        yield self
        await self._ended.wait()
        if self._lost is not None and not self._closed.is_set():
            raise ConnectionError(f"{self.where}: {self._lost}")

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        return {
            "eventSource": "aws:rmq",
            "eventSourceArn": self.arn,
            "rmqMessagesByQueue": {self.key: [r.payload for r in records]},
        }

    async def close(self) -> None:
        """Unacked messages (read, in flight, waiting to be returned) go back to the queue with the channel."""
        self._closed.set()
        self._ended.set()
        self._messages.put_nowait(None)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._returning):
            task.cancel()
        connection, self._connection, self._channel, self._queue = self._connection, None, None, None
        self._unacked.clear()
        if connection is not None:
            with contextlib.suppress(Exception):  # already gone is as good as closed
                await connection.close()

    def _on_channel_closed(self, _sender: Any, exc: BaseException | None) -> None:
        self._end(ConnectionError(f"the channel closed: {exc or 'closed by the broker'}"))

    def _on_consumer_cancelled(self, _frame: Any) -> None:
        self._end(ConnectionError(f"the broker cancelled the consumer of {self.key} (was the queue deleted?)"))

    def _end(self, exc: BaseException) -> None:
        """The channel or the consumer is gone: reads and lanes() raise, and the mapping reopens the source."""
        if self._closed.is_set() or self._lost is not None:
            return
        self._lost = exc
        self._ended.set()
        self._messages.put_nowait(None)

    # ---- Lane ------------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        try:
            first = await asyncio.wait_for(self._messages.get(), timeout)
        except TimeoutError:
            return []
        out: list[Record] = []
        item: Record | None = first
        while item is not None:
            out.append(item)
            if len(out) >= limit or self._messages.empty():
                return out
            item = self._messages.get_nowait()
        self._messages.put_nowait(None)  # the end mark stays for the next read
        if out:
            return out
        if self._closed.is_set():
            raise LaneEnded(self.key)
        raise ConnectionError(f"{self.where}: {self._lost}")

    async def settle(self, outcome: Outcome) -> None:
        """Ack what settled; return what failed after `redelivery_delay` (or reject it past `delivery_limit`)."""
        errors: list[BaseException] = []
        for record in outcome.settled:
            message = self._unacked.pop(record.position, None)
            if message is not None:
                try:
                    await message.ack()
                except Exception as exc:
                    errors.append(exc)
        for record in outcome.failed:
            message = self._unacked.get(record.position)
            if message is None:
                continue
            limit = self.config.delivery_limit
            if limit is not None and record.attempt >= limit:
                del self._unacked[record.position]
                try:
                    await message.reject(requeue=False)
                except Exception as exc:
                    errors.append(exc)
            elif self.config.redelivery_delay > 0:
                loop = asyncio.get_running_loop()
                self._timers[record.position] = loop.call_later(
                    self.config.redelivery_delay, self._spawn_return, record
                )
            else:
                try:
                    await self._return(record)
                except Exception as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    def _spawn_return(self, record: Record) -> None:
        self._timers.pop(record.position, None)
        task = asyncio.ensure_future(self._return_logged(record))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    async def _return_logged(self, record: Record) -> None:
        try:
            await self._return(record)
        except Exception as exc:
            self.context.log.warning(
                "returning a failed message to %s failed: %s; the broker redelivers it when the channel closes",
                self.key,
                exc,
                extra={"fields": {"mapping": self.context.mapping}},
            )

    async def _return(self, record: Record) -> None:
        """Give a failed message back to the queue, counted: nack+requeue where the broker counts deliveries
        (quorum queues), else a confirmed copy with `x-hub-receive-count`, then an ack of the original."""
        message = self._unacked.pop(record.position, None)
        if message is None or self._channel is None:
            return
        headers = dict(message.headers or {})
        if BROKER_COUNT_HEADER in headers:
            await message.nack(requeue=True)
            return
        import aio_pika

        headers[COUNT_HEADER] = record.attempt
        user_id = message.user_id if message.user_id == self.config.login() else None  # the broker checks it
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=message.delivery_mode,
            priority=message.priority,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            expiration=message.expiration,
            message_id=message.message_id,
            timestamp=message.timestamp,
            type=message.type,
            user_id=user_id,
            app_id=message.app_id,
        )
        await self._channel.default_exchange.publish(
            copy, routing_key=self.config.queue, mandatory=True, timeout=self.config.connect_timeout
        )
        await message.ack()

    # ---- records ---------------------------------------------------------------------------------------------

    async def _on_message(self, message: Any, generation: int) -> None:
        if generation != self._generation or self._closed.is_set():
            return  # a late delivery of an old channel: it is returned to the queue with that channel
        position = (generation, message.delivery_tag)
        self._unacked[position] = message
        self._messages.put_nowait(self._record(message, position))

    def _record(self, message: Any, position: tuple[int, int]) -> Record:
        headers = dict(message.headers or {})
        attempt = delivery_count(headers, bool(message.redelivered))
        body: bytes = message.body
        expiration = message.expiration
        properties = {
            "contentType": message.content_type,
            "contentEncoding": message.content_encoding,
            "headers": {k: header_value(v) for k, v in headers.items()},
            "deliveryMode": int(message.delivery_mode) if message.delivery_mode is not None else None,
            "priority": message.priority,
            "correlationId": message.correlation_id,
            "replyTo": message.reply_to,
            "expiration": None if expiration is None else f"{round(expiration * 1000)}",
            "messageId": message.message_id,
            "timestamp": amqp_timestamp(message.timestamp) if message.timestamp else None,
            "type": message.type,
            "userId": message.user_id,
            "appId": message.app_id,
            "clusterId": message.cluster_id,
            "bodySize": len(body),
        }
        data = base64.b64encode(body).decode("ascii")
        payload = {"basicProperties": properties, "redelivered": bool(message.redelivered) or attempt > 1, "data": data}
        sent = message.timestamp.timestamp() if message.timestamp else time.time()
        return Record(
            self.key,
            position,
            payload,
            timestamp=sent,
            size=RECORD_OVERHEAD + len(data) + 20 * len(headers),
            item_id=message.message_id,
            attempt=attempt,
            filter_view=data_view({k: v for k, v in payload.items() if k != "data"}, "data", body),
        )


def sample_event() -> dict[str, Any]:
    return {
        "eventSource": "aws:rmq",
        "eventSourceArn": "arn:aws:mq:us-east-1:000000000000:broker:localhost:5672",
        "rmqMessagesByQueue": {
            "orders::/": [
                {
                    "basicProperties": {
                        "contentType": "application/json",
                        "contentEncoding": None,
                        "headers": {"source": {"bytes": list(b"shop")}, "retries": 0},
                        "deliveryMode": 2,
                        "priority": None,
                        "correlationId": None,
                        "replyTo": None,
                        "expiration": None,
                        "messageId": "order-1042",
                        "timestamp": "Jun 10, 2024, 6:13:20 AM",
                        "type": None,
                        "userId": "guest",
                        "appId": None,
                        "clusterId": None,
                        "bodySize": 26,
                    },
                    "redelivered": False,
                    "data": base64.b64encode(b'{"item":"book","qty":2}\n  ').decode(),
                }
            ]
        },
    }


CONNECTOR = ConnectorSpec(
    type="rabbitmq",
    config=RabbitMQConfig,
    build=RabbitMQSource,
    family="queue",
    summary="A RabbitMQ queue (AMQP 0-9-1), delivered as Amazon MQ for RabbitMQ delivers (aws:rmq events).",
    sample_event=sample_event,
    data_key="data",
    defaults={"batch_size": 100, "maximum_batching_window": 0.5, "max_concurrency": 1},
)
