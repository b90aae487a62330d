"""The `dynamodb` connector (DynamoDB Streams) against moto_server: in-process and end to end. The scenarios every
connector passes (restart, broker cut, SIGKILL...) are in tests/connectors/."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.dynamodb import CONNECTOR, DynamoDBConfig
from connectors.shards import StreamSource
from hub.checkpoints import MemoryStore
from hub.filtering import FilterSet
from hub.records import Outcome, Record
from hub.source import SourceContext
from tests.fixtures_aws import boto, connection, create_table, unique
from tests.helpers import ROOT, HubProcess, read_jsonl, shape, wait_for
from tests.integration.test_kinesis import read_n, running

SAMPLE = json.loads((ROOT / "tests/conformance/events/dynamodb-event.json").read_text())


def ddb_source(url: str, table: str, store: MemoryStore, **settings: Any) -> StreamSource:
    config = DynamoDBConfig.model_validate(
        {
            "type": "dynamodb",
            "table_name": table,
            "starting_position": "TRIM_HORIZON",
            "poll_interval": "20ms",
            "connection": connection(url),
            **settings,
        }
    )
    context = SourceContext(mapping="items", store=store, region="us-east-1", account_id="123456789012")
    source = CONNECTOR.build(config, context)
    assert isinstance(source, StreamSource)
    return source


def put(url: str, table: str, *ids: str, **attributes: Any) -> None:
    dynamodb = boto(url, "dynamodb")
    for item_id in ids:
        dynamodb.put_item(TableName=table, Item={"id": {"S": item_id}, **attributes})


def ids(records: list[Record]) -> list[str]:
    return [r.payload["dynamodb"]["Keys"]["id"]["S"] for r in records]


async def test_changes_arrive_in_order_in_the_dynamodb_event_shape(moto: str) -> None:
    table = create_table(moto)
    put(moto, table, "a", blob={"B": b"\x00\x01*A"}, n={"N": "1"})
    put(moto, table, "a", n={"N": "2"})
    boto(moto, "dynamodb").delete_item(TableName=table, Key={"id": {"S": "a"}})
    put(moto, table, "b", "c")
    source = ddb_source(moto, table, MemoryStore())
    async with running(source) as run:
        lane = await run.lane()
        records = await read_n(lane, 5)
    assert [r.payload["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE", "INSERT", "INSERT"]
    assert ids(records) == ["a", "a", "a", "b", "c"]
    assert [r.position for r in records] == sorted(r.position for r in records)
    insert = records[0].payload
    assert insert["dynamodb"]["NewImage"]["blob"] == {"B": "AAEqQQ=="}  # binary values are base64, as AWS sends
    sample = SAMPLE["Records"][1]  # the sample record without userIdentity (a TTL deletion has it)
    want = shape({k: v for k, v in sample.items() if k != "dynamodb"})
    assert shape({k: v for k, v in insert.items() if k != "dynamodb"}) == want
    for key in ("ApproximateCreationDateTime", "SequenceNumber", "SizeBytes", "StreamViewType"):
        assert shape(insert["dynamodb"][key]) == shape(sample["dynamodb"][key])
    assert shape(insert["dynamodb"]["Keys"]["id"]) == shape(sample["dynamodb"]["Keys"]["val"])
    assert insert["eventSource"] == "aws:dynamodb"
    table_arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}"
    assert insert["eventSourceARN"].startswith(f"{table_arn}/stream/")
    modify = records[1].payload["dynamodb"]
    assert modify["OldImage"]["n"] == {"N": "1"} and modify["NewImage"]["n"] == {"N": "2"}
    assert records[0].item_id == insert["dynamodb"]["SequenceNumber"]
    assert records[0].order_key == records[1].order_key != records[3].order_key
    # filters see the record as the function does (data key `dynamodb`)
    inserts = FilterSet.compile([{"eventName": ["INSERT"], "dynamodb": {"Keys": {"id": {"S": [{"prefix": "b"}]}}}}])
    assert [inserts.matches(r.view()) for r in records] == [False, False, False, True, False]
    info = source.batch_info(records)["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == records[0].item_id and info["endSequenceNumber"] == records[-1].item_id
    assert info["batchSize"] == 5 and info["streamArn"] == insert["eventSourceARN"] and info["shardId"] == lane.key
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")


async def test_latest_reads_only_new_changes_also_after_a_restart(moto: str) -> None:
    table = create_table(moto)
    put(moto, table, "old")
    # creation times are whole seconds on AWS, so a restart re-reads the second the mapping began: begin it
    # in the next second, apart from "old"
    await asyncio.sleep(math.floor(time.time()) + 1.01 - time.time())
    store = MemoryStore()
    async with running(ddb_source(moto, table, store, starting_position="LATEST")) as run:
        lane = await run.lane()
        assert await lane.read(10, 0.2) == []
        put(moto, table, "new")
        assert ids(await read_n(lane, 1)) == ["new"]
    put(moto, table, "while-down")  # nothing settled yet: a restart must not skip it
    async with running(ddb_source(moto, table, store, starting_position="LATEST")) as run:
        lane = await run.lane()
        records = await read_n(lane, 2)
        assert ids(records) == ["new", "while-down"]
        await lane.settle(Outcome(succeeded=tuple(records)))
    async with running(ddb_source(moto, table, MemoryStore())) as run:  # TRIM_HORIZON: everything
        assert ids(await read_n(await run.lane(), 3)) == ["old", "new", "while-down"]


async def test_a_table_without_a_stream_is_an_error_at_open(moto: str) -> None:
    name = unique("plain")
    boto(moto, "dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    source = ddb_source(moto, name, MemoryStore())
    with pytest.raises(ValueError, match="has no stream"):
        await source.open()
    await source.close()


async def test_a_stream_arn_works_as_well_as_a_table_name(moto: str) -> None:
    table = create_table(moto)
    arn = boto(moto, "dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    put(moto, table, "x")
    source = ddb_source(moto, "", MemoryStore(), table_name=None, stream_arn=arn)
    async with running(source) as run:
        assert ids(await read_n(await run.lane(), 1)) == ["x"]


def test_config_takes_one_of_table_and_stream_and_no_at_timestamp() -> None:
    with pytest.raises(ValidationError, match="exactly one of table_name and stream_arn"):
        DynamoDBConfig.model_validate({"type": "dynamodb", "starting_position": "LATEST"})
    with pytest.raises(ValidationError):
        DynamoDBConfig.model_validate({"type": "dynamodb", "table_name": "t", "starting_position": "AT_TIMESTAMP"})


# ---- end to end ----------------------------------------------------------------------------------------------


def hub_config(tmp: Path, url: str, table: str, handler: str = "record", **mapping: Any) -> dict[str, Any]:
    source = {
        "type": "dynamodb",
        "table_name": table,
        "starting_position": "TRIM_HORIZON",
        "poll_interval": "20ms",
        "connection": connection(url),
    }
    return {
        "checkpoints": f"sqlite:///{tmp / 'state.db'}",
        "shutdown_grace": "5s",
        "functions": {"fn": {"handler": f"functions.recorder.{handler}", "timeout": "10s"}},
        "mappings": [{"name": "items", "function": "fn", "source": source, **mapping}],
    }


def delivered(out: Path) -> list[dict[str, Any]]:
    return [r for call in read_jsonl(out) for r in call["event"]["Records"]]


def numbers(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in records]


def test_the_hub_delivers_changes_in_order_and_filters(tmp_path: Path, moto: str) -> None:
    """Every insert once and in order, the MODIFY filtered out, the keys in DynamoDB's typed shape. (A SIGKILL in the
    middle: tests/connectors/.)"""
    table = create_table(moto)
    out = tmp_path / "calls.jsonl"
    config = hub_config(tmp_path, moto, table, batch_size=10, filter_criteria=[{"eventName": ["INSERT"]}])
    total = 30
    dynamodb = boto(moto, "dynamodb")
    for i in range(total):
        dynamodb.put_item(TableName=table, Item={"id": {"S": f"item-{i}"}, "n": {"N": str(i)}})
        if i == total // 2:  # a MODIFY amid the inserts: read, and filtered out, before the last inserts
            dynamodb.put_item(TableName=table, Item={"id": {"S": "item-0"}, "n": {"N": "0"}})
    with HubProcess(tmp_path, config, {"RECORDER_OUT": str(out)}) as hub:
        hub.start()
        wait_for(lambda: len(set(numbers(delivered(out)))) >= total, timeout=30, what="every change")
        assert hub.stop() == 0
        assert "filtered_out=1" in hub.log()
    records = delivered(out)
    assert {r["eventName"] for r in records} == {"INSERT"}
    assert numbers(records) == list(range(total))  # each once, in order
    assert shape(records[0]["dynamodb"]["Keys"]) == {"id": {"S": "string"}}
