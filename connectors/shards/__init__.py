"""Shard readers, shared by `kinesis` and `dynamodb` (DynamoDB Streams): shard discovery, parents before
children, shard iterators and checkpoints. Each connector supplies a `ShardService` (its API calls and its
record shape); everything else lives here.

| settle   | meaning for a shard                                                                                |
| -------- | -------------------------------------------------------------------------------------------------- |
| success  | the highest contiguous settled sequence number is checkpointed; a closed shard read to its end and  |
|          | wholly settled is marked finished, which lets its children start                                    |
| failure  | nothing after the first failed record is checkpointed, and the lane reads again from that record   |
| ordering | records reach the function in shard order, one batch at a time; children start after all parents   |

The checkpoint store holds, under `<mapping>/<service>/<stream ARN[@creation time]>`, one value per shard id:
`<sequence number>` (everything up to it settled), `SHARD_END` (closed, read to its end, settled) or
`LATEST@<epoch seconds>` (a LATEST mapping began then and nothing has settled since: a restart reads from that
moment, so records that arrive while the hub is down are not skipped).

A shard is finished only when GetRecords answers without a `NextShardIterator`, as AWS does at the end of a
closed shard; an emulator that never says so keeps the parent open and its children wait (nothing is lost).
Throttling and connection errors raise from `read`: the mapping backs off and reads again, and the lane keeps
its iterator, so no position is lost. An expired iterator is replaced at once from the last record read.

`config` holds the settings every shard reader has, `service` the contract a connector implements and the
values it speaks in, `source` the lanes and the source that drives them.
"""

from __future__ import annotations

from connectors.shards.config import ShardReaderConfig
from connectors.shards.lane import LATEST_MARK, SHARD_END, ShardLane
from connectors.shards.service import (
    IteratorExpired,
    Page,
    ShardGone,
    ShardInfo,
    ShardService,
    Start,
    StartKind,
    error_code,
)
from connectors.shards.source import StreamSource, iso

__all__ = [
    "LATEST_MARK",
    "SHARD_END",
    "IteratorExpired",
    "Page",
    "ShardGone",
    "ShardInfo",
    "ShardLane",
    "ShardReaderConfig",
    "ShardService",
    "Start",
    "StartKind",
    "StreamSource",
    "error_code",
    "iso",
]
