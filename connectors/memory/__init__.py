"""`memory`: named streams and queues inside the hub's own process, as Dramatiq's stub broker is for Dramatiq. Tests
put records into them to exercise the hub's policies with no broker; users try a configuration with them.

| settle   | `mode: stream`                                              | `mode: queue`                               |
| -------- | ----------------------------------------------------------- | ------------------------------------------- |
| success  | the next offset after the lane's contiguous settled records | the record is deleted                       |
|          | is checkpointed in the hub's store                          |                                             |
| failure  | nothing past it is checkpointed; the lane reads it again    | delivered again after `redelivery_delay`,   |
|          |                                                             | its `ApproximateReceiveCount` one higher    |
| ordering | per lane, one batch at a time (the stream policy)           | none (the queue policy, `max_concurrency`)  |

Records are put from the same process, from any thread:

    from connectors import memory

    memory.create("orders", mode="stream", lanes=2)        # or let the first source opened on it create it
    memory.put("orders", {"order_id": 1}, {"order_id": 2}, key="customer-7")

A channel lives as long as the process. A stream's checkpoints are in the hub's store like any stream's: with a
durable store and `records:` in the configuration (put, the same way, whenever the process creates the channel) a
restarted hub resumes after what settled. A queue keeps nothing across processes, and several processes
(`provisioned_poller_config`) or hubs would each have their own.

`cut(name)` and `restore(name)` play a broker that went away and came back: while a channel is cut, opening a
source on it, reading and settling raise ConnectionError, and the records of a settle that failed are delivered
again. The event shape is documented in docs/events/memory.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from connectors.memory.channels import BROKER, Channel, Mode, QueueChannel, StreamChannel
from connectors.memory.config import MemoryConfig
from connectors.memory.events import sample_event
from connectors.memory.source import MemorySource, QueueLane, StreamLane
from hub.source import ConnectorSpec


def create(name: str, mode: Mode = "stream", lanes: int = 1) -> Channel:
    """The channel `name`, made now if it does not exist. ValueError if it exists with another mode or lane count."""
    return BROKER.create(name, mode, lanes)[0]


def put(name: str, *values: Any, key: str | None = None, sent: float | None = None) -> list[Any]:
    """Put each value (a record's `data`) into the channel `name`, in order: into the lane of `key` (or round-robin)
    of a stream, at the end of a queue. `sent` is when the records were sent (epoch seconds, default now: the clock
    of maximum_record_age and tumbling windows), as a Kafka producer may set a record's timestamp. Returns each
    record's place: (lane, offset) in a stream, its id in a queue. KeyError if there is no such channel."""
    return BROKER.get(name).put(values, key, sent)


def cut(name: str) -> None:
    """The channel's broker goes away: opens, reads and settles on it raise ConnectionError until `restore` (readers
    waiting for records find out at once)."""
    channel = BROKER.get(name)
    channel.is_cut = True
    channel.wake()


def restore(name: str) -> None:
    """The channel answers again."""
    channel = BROKER.get(name)
    channel.is_cut = False
    channel.wake()


def waiting(name: str) -> int:
    """The records of a queue not deleted yet (waiting or in flight); of a stream, every record it holds."""
    channel = BROKER.get(name)
    if isinstance(channel, QueueChannel):
        return channel.waiting()
    assert isinstance(channel, StreamChannel)
    return sum(channel.end(lane) for lane in range(channel.lanes))


def delete(name: str) -> None:
    """Forget the channel (sources still open on it keep reading what they have)."""
    with BROKER.lock:
        BROKER.channels.pop(name, None)


def _resolve(config: MemoryConfig) -> ConnectorSpec:
    """`mode: queue` makes the source a queue to the hub: the queue policy and settings, not the stream's."""
    return CONNECTOR if config.mode == "stream" else QUEUE_CONNECTOR


CONNECTOR = ConnectorSpec(
    type="memory",
    config=MemoryConfig,
    build=MemorySource,
    family="stream",
    summary="Named streams of the hub's own process (queues with `mode: queue`), fed with connectors.memory.put or "
    "`records`: the stream and queue policies with no broker (tests, trying a configuration).",
    sample_event=sample_event,
    data_key="data",
    resolve=_resolve,
)
QUEUE_CONNECTOR = dataclasses.replace(CONNECTOR, family="queue", resolve=None)
"""The spec of a `mode: queue` source."""

__all__ = [
    "CONNECTOR",
    "MemoryConfig",
    "MemorySource",
    "QueueLane",
    "StreamLane",
    "create",
    "cut",
    "delete",
    "put",
    "restore",
    "sample_event",
    "waiting",
]
