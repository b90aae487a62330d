"""Reading a given-up batch again from a Kinesis or DynamoDB stream, for a replay (hub.replay).

A stream's on-failure record (`KinesisBatchInfo`, `DDBStreamBatchInfo`) names its batch by shard and by its first
and last sequence numbers, not by content. A replay reads those records again with an `AT_SEQUENCE_NUMBER`
iterator, as long as the stream retains them (24 hours by default), and renders the event the function got:
`{"Records": [...]}`. A first record that is no longer there (trimmed) raises Gone: nothing is replayed.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from connectors.shards.service import IteratorExpired, ShardGone, ShardService, Start, error_code
from hub.readback import Gone
from hub.source import SourceContext

EMPTY_PAGES = 20
"""Empty GetRecords answers in a row after which the records are taken as not there (an open shard's tail)."""


async def reread(service: ShardService, info: dict[str, Any]) -> dict[str, Any]:
    """The event of the records `info` names, read again through `service` (not connected yet)."""
    shard = str(info.get("shardId") or "")
    first, last = str(info.get("startSequenceNumber") or ""), str(info.get("endSequenceNumber") or "")
    if not (shard and first.isdigit() and last.isdigit()):
        raise Gone("the failure record names no shard and sequence numbers")
    async with AsyncExitStack() as stack:
        await service.connect(stack)
        try:
            iterator: str | None = await service.iterator(shard, Start("AT_SEQUENCE_NUMBER", sequence=first))
        except ShardGone:
            raise Gone(f"shard {shard} is no longer in the stream") from None
        except Exception as exc:
            if error_code(exc) in ("TrimmedDataAccessException", "InvalidArgumentException"):
                raise Gone(f"the records from {first} are no longer in shard {shard}") from None
            raise
        payloads: list[Any] = []
        empty = 0
        while iterator is not None and empty < EMPTY_PAGES:
            try:
                page = await service.get_records(iterator, service.max_limit)
            except IteratorExpired:
                raise Gone(f"the records from {first} are no longer in shard {shard}") from None
            iterator = page.next_iterator
            empty = 0 if page.records else empty + 1
            for raw in page.records:
                record = service.record(shard, raw)
                if not payloads and record.item_id != first:
                    raise Gone(f"record {first} is no longer in shard {shard} (the oldest left is {record.item_id})")
                if int(record.item_id) > int(last):
                    return {"Records": payloads}
                payloads.append(record.payload)
                if record.item_id == last:
                    return {"Records": payloads}
            if not page.records and page.millis_behind == 0 and payloads:
                break
    if not payloads:
        raise Gone(f"record {first} is no longer in shard {shard}")
    return {"Records": payloads}


async def reread_kinesis(config: Any, context: SourceContext, info: dict[str, Any]) -> dict[str, Any]:
    """The Kinesis event of the records a `KinesisBatchInfo` names, read again from the stream (hub.replay)."""
    from connectors.kinesis import KinesisService

    return await reread(KinesisService(config, context), info)


async def reread_dynamodb(config: Any, context: SourceContext, info: dict[str, Any]) -> dict[str, Any]:
    """The DynamoDB Streams event of the records a `DDBStreamBatchInfo` names, read again from the stream
    (hub.replay)."""
    from connectors.dynamodb import DynamoDBService

    return await reread(DynamoDBService(config, context), info)
