"""`redis`: Redis streams read through a consumer group, as Lambda reads an SQS queue.

| settle   | meaning for Redis streams                                                                       |
| -------- | ----------------------------------------------------------------------------------------------- |
| success  | XACK: the entry leaves the group's pending list (it stays in the stream; trim it with MAXLEN)    |
| failure  | nothing: the entry stays pending and is claimed again (XAUTOCLAIM) once idle `claim_idle_time`  |
| ordering | none across entries (one unordered lane per stream, up to `max_concurrency` batches in flight)  |

Reads: at open, the entries still pending for this consumer (a restart with the same `consumer_name`) are read
again (XREADGROUP id `0`); then new entries are read with blocking XREADGROUP `>`, and every
`claim_idle_time / 2` (at most 5 s) XAUTOCLAIM takes over entries that have been pending longer than
`claim_idle_time`: a failed entry of ours, or one of a consumer that died. That is the broker's redelivery, and
`claim_idle_time` plays the part of SQS's visibility timeout: keep it above the function's timeout. The delivery
count Redis keeps for each pending entry is the record's attempt (`ApproximateReceiveCount`), which the
dispatcher compares with `max_receive_count`. The event shape is documented in docs/events/redis.md.

Each read is watched (hub.health): one that takes longer than `block` + 3 s is a server that does not answer
(paused, or a network that drops packets), and the mapping shows `degraded` until a read succeeds again.
"""

from __future__ import annotations

from connectors.redis_streams.config import RedisStreamsConfig, check_mapping, public_url
from connectors.redis_streams.events import FIELD_OVERHEAD, RECORD_OVERHEAD, entry_millis, filter_view, sample_event
from connectors.redis_streams.source import STARTING_IDS, RedisStreamsSource, StreamLane
from hub.source import ConnectorSpec

CONNECTOR = ConnectorSpec(
    type="redis",
    config=RedisStreamsConfig,
    build=RedisStreamsSource,
    family="queue",
    summary="Redis streams through a consumer group, delivered like an SQS queue (XACK on success, XAUTOCLAIM).",
    sample_event=sample_event,
    data_key="data",
    defaults={"max_concurrency": 5},
    requires=("redis",),
    extra="redis",
    shares_work=True,
    check=check_mapping,
)

__all__ = [
    "CONNECTOR",
    "FIELD_OVERHEAD",
    "RECORD_OVERHEAD",
    "STARTING_IDS",
    "RedisStreamsConfig",
    "RedisStreamsSource",
    "StreamLane",
    "entry_millis",
    "filter_view",
    "public_url",
    "sample_event",
]
