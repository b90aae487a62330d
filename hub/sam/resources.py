"""A SAM template's queues, streams and tables, created on the AWS API emulator as a deploy would create them.

`hub run TEMPLATE` calls `prepare(document)` once, in the hub's own process, after the template is translated
and validated and before any mapping or poller process starts (pollers never create anything). What it promises:

- Every `AWS::SQS::Queue`, `AWS::Kinesis::Stream`, `AWS::DynamoDB::Table` and `AWS::Serverless::SimpleTable` of
  the template (whose `Condition` holds) exists on the bindings' `aws.endpoint_url` afterwards, under its local
  name (`Bindings.name`), and every `AWS::S3::Bucket` has its folder; so does the queue SAM makes for a schedule's
  `DeadLetterConfig: {Type: SQS}` (`<Function><Event>Queue`, or its QueueLogicalId).
- A missing resource is created with the properties that matter locally (`QUEUE_ATTRIBUTES`, RedrivePolicy with
  the dead-letter queue's ARN as the emulator gives it, the dead-letter queue created first; ShardCount or
  ON_DEMAND; a table's keys, billing, indexes and stream, which a table that a DynamoDB event reads always gets).
- An existing resource is left exactly as it is, and creating is idempotent (hub/sam/emulator.py).
- Nothing is created against AWS itself (bindings without `aws.endpoint_url`), nor with `create_resources: false`.
- A resource that cannot be created raises ConfigError naming the template's file, line and logical id, and what
  to do (ResourcesError when the emulator is unreachable or refuses it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from hub.sam.bindings import name_in_arn
from hub.sam.emulator import Unmade, Wanted, create_all
from hub.sam.events import made_dead_letter_queue
from hub.sam.intrinsics import NO_VALUE, SamError
from hub.sam.translate import SamLocated, plain
from hub.yamlsource import ConfigError, dotted

log = logging.getLogger("hub.sam")

QUEUE_ATTRIBUTES = (
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "MaximumMessageSize",
)
"""The queue properties a queue is created with (the rest only matter to a deployment)."""
DEFAULT_STREAM_VIEW = "NEW_AND_OLD_IMAGES"
"""The stream a table gets when a DynamoDB event reads it and the template's table names no StreamSpecification."""
_SIMPLE_TYPES = {"String": "S", "Number": "N", "Binary": "B"}
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


def plan(document: SamLocated) -> list[Wanted]:
    """What `document`'s template wants to exist, dead-letter queues before the queues that name them. Raises
    ConfigError (file:line:col, logical id) for a resource that cannot be created as written."""
    bindings = document.bindings
    errors: list[str] = []
    out: list[Wanted] = []
    read_streams = {
        m["source"].get("table_name") for m in document.data.get("mappings", []) if m["source"]["type"] == "dynamodb"
    }
    for logical_id, resource in (document.template.get("Resources") or {}).items():
        at = ("Resources", logical_id)
        kind = resource.get("Type") if isinstance(resource, dict) else None
        if kind not in _PLANNERS:
            continue
        try:
            if "Condition" in resource and not document.resolver.condition(resource["Condition"], (*at, "Condition")):
                continue
            wanted = _PLANNERS[kind](document, logical_id, bindings.name(logical_id))
            wanted.stream_needed = wanted.kind == "table" and wanted.name in read_streams
            if wanted.stream_needed and "StreamSpecification" not in wanted.arguments:
                wanted.arguments["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": DEFAULT_STREAM_VIEW}
            out.append(wanted)
        except SamError as exc:
            errors.append(f"{document.place(exc.at)}: {dotted(exc.at)} ({logical_id}): {exc.message}")
    if errors:
        raise ConfigError(errors)
    out.extend(_made_dead_letter_queues(document, {w.logical_id for w in out}))
    return _dead_letters_first(out)


def _made_dead_letter_queues(document: SamLocated, declared: set[str]) -> list[Wanted]:
    """The queues SAM makes for schedules' `DeadLetterConfig: {Type: SQS}` (those the template does not declare)."""
    out: list[Wanted] = []
    resources = document.template.get("Resources") or {}
    for function, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        at = ("Resources", function)
        if "Condition" in resource and not document.resolver.condition(resource["Condition"], (*at, "Condition")):
            continue
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event_id, event in events.items() if isinstance(events, dict) else ():
            if not isinstance(event, dict) or event.get("Type") not in ("Schedule", "ScheduleV2"):
                continue
            letter = (event.get("Properties") or {}).get("DeadLetterConfig")
            if not isinstance(letter, dict) or "Arn" in letter or letter.get("Type") != "SQS":
                continue
            logical_id = made_dead_letter_queue(function, event_id, letter)
            if logical_id in declared or logical_id in resources:
                continue
            declared.add(logical_id)
            name = document.bindings.name(logical_id)
            out.append(Wanted(logical_id, "queue", name, {"QueueName": name, "Attributes": {}}))
    return out


def prepare(document: Any, create: bool = True) -> None:
    """Create what `plan` wants and is missing (see the module docstring); `document` is a template's
    (translate's SamLocated). `create=False` only checks that the template's resources could be created as
    written (`hub validate`: nothing is contacted). Raises ConfigError: ResourcesError when the emulator is
    unreachable or refuses a resource."""
    if not isinstance(document, SamLocated):
        raise TypeError(f"not a SAM template's document: {document!r}")
    settings = document.bindings.settings
    if not settings.create_resources:
        if create:
            log.info("create_resources: false in the bindings: the hub creates no queue, stream or table")
        return
    wanted = plan(document)
    if not create:
        return
    for item in wanted:
        if item.kind == "bucket":
            _folder(document, item)
    remote = [item for item in wanted if item.kind != "bucket"]
    endpoint = str(settings.aws.get("endpoint_url") or "")
    if remote and not endpoint:
        log.info("the bindings name no aws.endpoint_url (AWS itself): the hub creates no queues, streams or tables")
    elif remote:
        from hub.aws import AwsConnection

        connection = AwsConnection.model_validate(document.bindings.connection)
        try:
            asyncio.run(create_all(remote, connection, endpoint))
        except Unmade as exc:
            raise _error(document, exc.wanted, str(exc)) from None


def _folder(document: SamLocated, item: Wanted) -> None:
    folder = Path(item.name)
    if folder.is_dir():
        log.info("bucket %s: folder %s exists", item.arguments["Bucket"], folder)
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _error(document, item, f"cannot make the bucket's folder {folder}: {exc}") from None
    log.info("bucket %s: made folder %s", item.arguments["Bucket"], folder)


def _error(document: SamLocated, item: Wanted, message: str) -> ResourcesError:
    at = ("Resources", item.logical_id)
    return ResourcesError([f"{document.place(at)}: {dotted(at)} ({item.logical_id}): {message}"])


class ResourcesError(ConfigError):
    """A resource could not be created (each error names the template's file, line and logical id)."""

    verdict = "resources not created"


# ---- planning: the template's properties as the Create call's arguments ------------------------------------------


def _properties(document: SamLocated, logical_id: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The resolved values of those of `keys` the resource sets (only these: a property the hub does not use may
    hold what it cannot resolve)."""
    props = document.template["Resources"][logical_id].get("Properties") or {}
    out = {}
    for key in keys:
        if isinstance(props, dict) and key in props:
            value = document.resolver.resolve(props[key], ("Resources", logical_id, "Properties", key))
            if value is not NO_VALUE:
                out[key] = plain(value)
    return out


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _queue(document: SamLocated, logical_id: str, name: str) -> Wanted:
    props = _properties(document, logical_id, (*QUEUE_ATTRIBUTES, "RedrivePolicy"))
    attributes = {key: _text(props[key]) for key in QUEUE_ATTRIBUTES if key in props}
    at = ("Resources", logical_id, "Properties")
    if attributes.get("FifoQueue") == "false":
        del attributes["FifoQueue"]  # SQS refuses FifoQueue=false; a standard queue is simply not FIFO
    elif attributes.get("FifoQueue") == "true" and not name.endswith(".fifo"):
        raise SamError((*at, "FifoQueue"), f"a FIFO queue's name ends in .fifo, not {name!r}: set QueueName")
    wanted = Wanted(logical_id, "queue", name, {"QueueName": name, "Attributes": attributes})
    redrive = props.get("RedrivePolicy")
    if isinstance(redrive, str):
        try:
            redrive = json.loads(redrive)
        except ValueError:
            raise SamError((*at, "RedrivePolicy"), "RedrivePolicy is not JSON") from None
    if redrive is not None:
        if not isinstance(redrive, dict) or not redrive.get("deadLetterTargetArn"):
            raise SamError((*at, "RedrivePolicy"), "RedrivePolicy takes {deadLetterTargetArn, maxReceiveCount}")
        wanted.redrive, wanted.dead_letter = redrive, name_in_arn(str(redrive["deadLetterTargetArn"]))
    return wanted


def _stream(document: SamLocated, logical_id: str, name: str) -> Wanted:
    props = _properties(document, logical_id, ("ShardCount", "StreamModeDetails"))
    mode = _mapping(props, "StreamModeDetails", logical_id).get("StreamMode")
    if mode == "ON_DEMAND":
        return Wanted(logical_id, "stream", name, {"StreamName": name, "StreamModeDetails": {"StreamMode": mode}})
    try:
        shards = int(props.get("ShardCount", 1))
    except (TypeError, ValueError):
        raise SamError(("Resources", logical_id, "Properties", "ShardCount"), "ShardCount is a number") from None
    return Wanted(logical_id, "stream", name, {"StreamName": name, "ShardCount": shards})


def _mapping(props: dict[str, Any], key: str, logical_id: str) -> dict[str, Any]:
    """The mapping `props[key]` ({} when it is not set). Raises SamError for another kind of value."""
    value = props.get(key) or {}
    if not isinstance(value, dict):
        raise SamError(("Resources", logical_id, "Properties", key), f"{key} takes a mapping (`Key: value` lines)")
    return value


def _throughput(value: Any, at: tuple[Any, ...]) -> dict[str, int]:
    units = value if isinstance(value, dict) else {}
    try:
        return {k: int(units[k]) for k in ("ReadCapacityUnits", "WriteCapacityUnits") if k in units}
    except (TypeError, ValueError):
        raise SamError(at, "ReadCapacityUnits and WriteCapacityUnits are whole numbers") from None


def _table(document: SamLocated, logical_id: str, name: str) -> Wanted:
    keys = ("KeySchema", "AttributeDefinitions", "BillingMode", "ProvisionedThroughput", "StreamSpecification")
    props = _properties(document, logical_id, (*keys, "GlobalSecondaryIndexes", "LocalSecondaryIndexes"))
    if "KeySchema" not in props or "AttributeDefinitions" not in props:
        raise SamError(("Resources", logical_id, "Properties"), "a table needs KeySchema and AttributeDefinitions")
    arguments: dict[str, Any] = {"TableName": name, "KeySchema": props["KeySchema"]}
    arguments["AttributeDefinitions"] = props["AttributeDefinitions"]
    throughput = _throughput(props.get("ProvisionedThroughput"), ("Resources", logical_id, "Properties"))
    # CloudFormation's default is PROVISIONED, which needs a throughput; without one the table is on demand here
    arguments["BillingMode"] = props.get("BillingMode") or ("PROVISIONED" if throughput else "PAY_PER_REQUEST")
    if arguments["BillingMode"] == "PROVISIONED":
        arguments["ProvisionedThroughput"] = throughput
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if isinstance(props.get(key), list):
            if not all(isinstance(index, dict) for index in props[key]):
                raise SamError(("Resources", logical_id, "Properties", key), f"{key} is a list of mappings")
            indexes = [{k: v for k, v in index.items() if k in _INDEX_KEYS} for index in props[key]]
            for index in indexes:
                if "ProvisionedThroughput" in index:
                    at = ("Resources", logical_id, "Properties", key)
                    index["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"], at)
            arguments[key] = indexes
    view = _mapping(props, "StreamSpecification", logical_id).get("StreamViewType")
    if view:
        arguments["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
    return Wanted(logical_id, "table", name, arguments)


def _simple_table(document: SamLocated, logical_id: str, name: str) -> Wanted:
    props = _properties(document, logical_id, ("PrimaryKey", "ProvisionedThroughput"))
    key = _mapping(props, "PrimaryKey", logical_id) or {"Name": "id", "Type": "String"}
    kind = _SIMPLE_TYPES.get(str(key.get("Type", "String")))
    if kind is None or not key.get("Name"):
        raise SamError(("Resources", logical_id, "Properties", "PrimaryKey"), "PrimaryKey takes {Name, Type: String}")
    arguments: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": kind}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if props.get("ProvisionedThroughput"):
        arguments["BillingMode"] = "PROVISIONED"
        at = ("Resources", logical_id, "Properties", "ProvisionedThroughput")
        arguments["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"], at)
    return Wanted(logical_id, "table", name, arguments)


def _bucket(document: SamLocated, logical_id: str, name: str) -> Wanted:
    return Wanted(logical_id, "bucket", document.bindings.folder(name), {"Bucket": name})


_PLANNERS = {
    "AWS::SQS::Queue": _queue,
    "AWS::Kinesis::Stream": _stream,
    "AWS::DynamoDB::Table": _table,
    "AWS::Serverless::SimpleTable": _simple_table,
    "AWS::S3::Bucket": _bucket,
}


def _dead_letters_first(wanted: list[Wanted]) -> list[Wanted]:
    queues = {item.name: item for item in wanted if item.kind == "queue"}
    out: list[Wanted] = []

    def place(item: Wanted, seen: tuple[str, ...] = ()) -> None:
        target = queues.get(item.dead_letter or "")
        if target is not None and target.name not in seen and target not in out:
            place(target, (*seen, item.name))
        if item not in out:
            out.append(item)

    for item in wanted:
        place(item)
    return out


# ---- creating: each one only when it is missing ------------------------------------------------------------------
