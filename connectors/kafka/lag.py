"""A Kafka mapping's OffsetLag, per partition: what the consumer already knows, and a request only where it does not.

OffsetLag (AWS's name) is the partition's high watermark minus the group's committed offset: the records written
that the mapping has not processed yet. The high watermark comes with every fetch response (aiokafka keeps it per
partition), so it costs nothing while the partition is fetched; a paused partition (its buffer is full: connectors/
kafka/source.py) is not fetched, and its end is asked of the brokers (one ListOffsets for all of them). The committed
offset is the one the source last committed; for a partition it has not committed yet (a group that resumes), it is
asked of the brokers once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.records import Lag


async def offset_lags(
    consumer: Any, lanes: Mapping[str, Any], committed: dict[str, int], paused: set[Any]
) -> dict[str, Lag]:
    """OffsetLag of each lane (lane key -> its TopicPartition). Fills `committed` for partitions it did not know."""
    for key, tp in lanes.items():
        if key not in committed:
            offset = await consumer.committed(tp)
            if offset is not None:
                committed.setdefault(key, offset)
    stale = [tp for tp in lanes.values() if tp in paused or consumer.highwater(tp) is None]
    ends = await consumer.end_offsets(stale) if stale else {}
    out: dict[str, Lag] = {}
    for key, tp in lanes.items():
        high = ends.get(tp, consumer.highwater(tp))
        if high is not None and key in committed:
            out[key] = Lag(offset_lag=max(0, high - committed[key]))
    return out
