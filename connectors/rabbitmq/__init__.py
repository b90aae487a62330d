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

from connectors.rabbitmq.config import RabbitMQConfig
from connectors.rabbitmq.events import (
    BROKER_COUNT_HEADER,
    COUNT_HEADER,
    RECORD_OVERHEAD,
    amqp_timestamp,
    delivery_count,
    header_value,
    sample_event,
)
from connectors.rabbitmq.source import RabbitMQSource
from hub.source import ConnectorSpec

CONNECTOR = ConnectorSpec(
    type="rabbitmq",
    config=RabbitMQConfig,
    build=RabbitMQSource,
    family="queue",
    summary="A RabbitMQ queue (AMQP 0-9-1), delivered as Amazon MQ for RabbitMQ delivers (aws:rmq events).",
    sample_event=sample_event,
    data_key="data",
    defaults={"batch_size": 100, "maximum_batching_window": 0.5, "max_concurrency": 1},
    requires=("aio_pika",),
    extra="rabbitmq",
    shares_work=True,
)

__all__ = [
    "BROKER_COUNT_HEADER",
    "CONNECTOR",
    "COUNT_HEADER",
    "RECORD_OVERHEAD",
    "RabbitMQConfig",
    "RabbitMQSource",
    "amqp_timestamp",
    "delivery_count",
    "header_value",
    "sample_event",
]
