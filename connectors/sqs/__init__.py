"""`sqs`: an Amazon SQS queue (standard or FIFO), read as Lambda's SQS event source mapping reads it.

| settle   | meaning for SQS                                                                                  |
| -------- | ------------------------------------------------------------------------------------------------ |
| success  | DeleteMessageBatch with the newest receipt handle (succeeded, given up to the destination, filtered) |
| failure  | the message is left to its visibility timeout, as Lambda leaves it (or, with `visibility_backoff`, |
|          | made visible after a backoff); the queue's redrive policy moves it to its DLQ after maxReceiveCount |
| ordering | standard: none (one unordered lane, `max_concurrency` batches in flight); FIFO: per message group |

Receiving: long polls of at most `wait_time` seconds, cancelled at once when the hub stops (a message SQS had
already handed to a cancelled poll comes back after its visibility timeout). A batch larger than 10 is made of
several receives; follow-up receives do not wait while the queue keeps answering with full pages.

Visibility heartbeat: from the moment a message is received until its batch settles, SQS is asked every third
of the visibility timeout to keep it invisible for another full timeout (ChangeMessageVisibilityBatch), so a
slow function never sees its message handed to another consumer mid-invocation. Receipt handles change at every
receive: the newest one is kept for the heartbeat, the delete and the release. A message received again while
it is still held here is not delivered twice; only its receipt handle is updated.

FIFO queues: one ordered lane per message group (made when a group's first message arrives, ended after
`GROUP_IDLE` seconds without messages), fed by one receiver. SQS itself never hands out a message of a group
while an earlier one of that group is in flight, the heartbeat keeps every received message in flight until it
settles, and each lane runs one batch at a time: that is order per group. While it holds messages, the receiver
polls for at most 1 s at a time, so a group unlocked by our own delete is read again promptly (an emulator
such as moto does not notice the unlock during a long poll that began before it). Groups run concurrently, at most
`max_concurrency` batches at once (a lane holds a slot while it has unsettled records). When a batch reports a
failure, the messages after the first failed one in that group are released too, never deleted, so the group
is redelivered in order (AWS leaves this to the function's partial batch response).
"""

from __future__ import annotations

from connectors.sqs.config import QueueSettings, SqsConfig
from connectors.sqs.events import message_attempt, sample_event, sent_at, sqs_record
from connectors.sqs.queue import RECEIVE_MAX, Held, Receipt, SqsQueue, receipt
from connectors.sqs.source import GROUP_IDLE, RECORD_OVERHEAD, GroupLane, QueueLane, SqsSource
from hub.source import ConnectorSpec

CONNECTOR = ConnectorSpec(
    type="sqs",
    config=SqsConfig,
    build=SqsSource,
    family="queue",
    summary="An Amazon SQS queue (standard or FIFO), as Lambda's SQS event source mapping reads it.",
    sample_event=sample_event,
    data_key="body",
    defaults={"batch_size": 10, "maximum_batching_window": 0.0, "max_concurrency": 5},
    requires=("aioboto3",),
    extra="aws",
    shares_work=True,
    minimum_pollers=2,
)

__all__ = [
    "CONNECTOR",
    "GROUP_IDLE",
    "RECEIVE_MAX",
    "RECORD_OVERHEAD",
    "GroupLane",
    "Held",
    "QueueLane",
    "QueueSettings",
    "Receipt",
    "SqsConfig",
    "SqsQueue",
    "SqsSource",
    "message_attempt",
    "receipt",
    "sample_event",
    "sent_at",
    "sqs_record",
]
