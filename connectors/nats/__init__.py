"""`nats`: a NATS JetStream stream read through a durable pull consumer (nats-py), delivered like an SQS queue.

| settle   | meaning for JetStream                                                                                |
| -------- | ---------------------------------------------------------------------------------------------------- |
| success  | `+ACK` for succeeded and filtered messages; `+TERM` for given-up ones (the destination took them, as  |
|          | SQS deletes after a DLQ move): final as an ack is, and JetStream's MSG_TERMINATED advisory tells its  |
|          | monitoring that the message failed                                                                   |
| failure  | `-NAK` with a delay: the mapping's backoff for its attempt (`retry_delay` x 2^(attempt-1), at most    |
|          | `maximum_retry_delay`, with jitter); JetStream delivers it again after that, to any hub               |
| ordering | none (one unordered lane; up to `max_concurrency` batches in flight; a nak'd message comes back later) |

The consumer: a durable pull consumer with explicit acks, named after the mapping unless `consumer` names it,
created when missing (`create_consumer`) with `starting_position` (deliver policy `all` or `new`), `ack_wait`,
`max_deliver`, `max_ack_pending` and `filter_subject`; an existing one keeps its position and its settings, and is
refused when it could lose messages the configuration does not expect to (a push consumer, other subjects, another
`max_deliver`). Every hub process that reads the same consumer shares its messages: JetStream hands each pending
message to one pull request, so pollers and several hubs need nothing more.

Delivery count: JetStream's `num_delivered` (in each message's ack subject) is the record's attempt, which the
dispatcher compares with `max_receive_count`; at that count a failing message goes to the mapping's destination
and is terminated (`+TERM`). JetStream's own `max_deliver` would stop delivering a message silently, so a mapping
that sets it must also set a smaller `max_receive_count` and a destination (checked when the configuration loads,
and against the consumer on the server when the source opens): nothing leaves the consumer without the destination
taking it.

Reads: pull requests (`expires` = `pull_wait`) ask for up to `prefetch` messages ahead; a new one goes out before
the last runs out, so messages arrive as they are published. Messages delivered and not settled (buffered, or in a
batch) are reported in progress (`+WPI`) every third of the consumer's ack wait, so a slow function keeps them;
those of a hub that died are delivered to the others after the ack wait. On close, buffered messages are nak'd
(delivered again at once). The client never reconnects by itself: a lost connection, a server silent past a pull
request's expiry, or a deleted consumer ends the source, and the mapping reopens it with backoff; acks of batches
that finish meanwhile go out on the new connection (an ack subject is valid on any connection).
"""

from __future__ import annotations

from connectors.nats.config import NatsConfig, check_mapping, durable_name
from connectors.nats.events import EVENT_SOURCE, RECORD_OVERHEAD, Delivery, delivery, nats_record, sample_event
from connectors.nats.source import NatsSource
from hub.source import ConnectorSpec

CONNECTOR = ConnectorSpec(
    type="nats",
    config=NatsConfig,
    build=NatsSource,
    family="queue",
    summary="A NATS JetStream stream through a durable pull consumer, delivered like an SQS queue (ack, delayed nak).",
    sample_event=sample_event,
    data_key="data",
    defaults={"batch_size": 100, "max_concurrency": 5},
    requires=("nats",),
    extra="nats",
    shares_work=True,
    check=check_mapping,
)

__all__ = [
    "CONNECTOR",
    "EVENT_SOURCE",
    "RECORD_OVERHEAD",
    "Delivery",
    "NatsConfig",
    "NatsSource",
    "check_mapping",
    "delivery",
    "durable_name",
    "nats_record",
    "sample_event",
]
