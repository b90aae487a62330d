"""The `rabbitmq` source: one unordered lane, the queue (see the package docstring)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any
from urllib.parse import urlsplit

from connectors.rabbitmq.config import RabbitMQConfig
from connectors.rabbitmq.events import (
    BROKER_COUNT_HEADER,
    COUNT_HEADER,
    RECORD_OVERHEAD,
    amqp_timestamp,
    delivery_count,
    header_value,
    trace_headers,
)
from hub.inbox import Inbox
from hub.records import Lag, Outcome, Record, data_view
from hub.source import SourceContext


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
        self._unacked: dict[Hashable, Any] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}  # failed messages waiting for redelivery_delay
        self._returning: set[asyncio.Task[None]] = set()
        self.inbox = Inbox(self.key, self.where)
        self._lag_channel: Any = None

    # ---- Source ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, open a channel with the prefetch count, and start consuming the queue (each open is a new
        generation: acks of an older one are ignored)."""
        import aio_pika

        self.inbox.reset()
        self._generation += 1
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
        """Its one unordered lane (itself), until the connection ends; raises ConnectionError when the broker closed
        it, so that the mapping reconnects."""
        yield self
        await self.inbox.ended.wait()
        if (failure := self.inbox.failure) is not None:
            raise failure

    def render(self, records: Sequence[Record], attempt: int) -> Any:
        """The Amazon MQ for RabbitMQ event: the messages under `rmqMessagesByQueue`."""
        return {
            "eventSource": "aws:rmq",
            "eventSourceArn": self.arn,
            "rmqMessagesByQueue": {self.key: [r.payload for r in records]},
        }

    def trace_context(self, record: Record) -> dict[str, str] | None:
        """The `traceparent` (and `tracestate`) headers of the message, if it has them (hub.tracing)."""
        return trace_headers(record.payload)

    async def lag(self) -> dict[str, Lag]:
        """The queue's ready messages (a passive queue.declare) as its backlog. On a channel of its own: a
        declare that fails closes its channel, and must not close the one that consumes."""
        connection = self._connection
        if connection is None or self.inbox.closed.is_set():
            return {}
        channel = self._lag_channel
        if channel is None or channel.is_closed:
            channel = self._lag_channel = await connection.channel(publisher_confirms=False)
        queue = await channel.declare_queue(self.config.queue, passive=True, timeout=self.config.connect_timeout)
        return {self.key: Lag(backlog=int(queue.declaration_result.message_count))}

    async def close(self) -> None:
        """Unacked messages (read, in flight, waiting to be returned) go back to the queue with the channel."""
        self.inbox.close()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._returning):
            task.cancel()
        connection, self._connection, self._channel, self._queue = self._connection, None, None, None
        self._lag_channel = None  # closed with its connection
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
        self.inbox.end(exc)

    # ---- Lane ------------------------------------------------------------------------------------------------

    async def read(self, limit: int, timeout: float | None) -> list[Record]:
        """Up to `limit` delivered messages; [] when `timeout` passed; LaneEnded once closed, the broker's error once
        the connection was lost (see hub.inbox)."""
        return await self.inbox.read(limit, timeout)

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
        if generation != self._generation or self.inbox.closed.is_set():
            return  # a late delivery of an old channel: it is returned to the queue with that channel
        position = (generation, message.delivery_tag)
        self._unacked[position] = message
        self.inbox.put(self._record(message, position))

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
