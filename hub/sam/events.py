"""A SAM function's `Events` as hub mappings: each event type's properties mapped onto the hub's source and
mapping settings (AWS's event source mapping settings in snake_case).

Every property SAM defines for an event type (aws-sam-translator's own event source classes say which) is
either translated, ignored because it only matters to a deployment (KMS keys, metrics, logging, credentials
that the local binding's URL replaces), or refused by name; a property SAM does not define is refused as SAM
refuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.sam.bindings import Bindings, name_in_arn
from hub.sam.intrinsics import SamError

SUPPORTED = (
    "SQS",
    "Kinesis",
    "DynamoDB",
    "S3",
    "Schedule",
    "ScheduleV2",
    "MSK",
    "SelfManagedKafka",
    "MQ",
    "Api",
    "HttpApi",
)
# Deployment-only properties: they change nothing a handler sees locally.
IGNORED = frozenset(
    {
        "KmsKeyArn",
        "MetricsConfig",
        "LoggingConfig",
        "SourceAccessConfigurations",
        "SecretsManagerKmsKeyId",
        "Description",
        "FlexibleTimeWindow",
        "PermissionsBoundary",
        "RoleArn",
        "Auth",
        "RequestModel",
        "RequestParameters",
        "TimeoutInMillis",
        "PayloadFormatVersion",
        "RouteSettings",
        "EventBridgeRuleName",
        "OmitName",
        "GroupName",
        "Target",
        "DeadLetterConfig.Type",
        "DeadLetterConfig.QueueLogicalId",
        "ResponseTransformingEnabled",
    }
)
# Event source mapping properties, the same for every pull event type.
_ESM = {
    "BatchSize": "batch_size",
    "MaximumBatchingWindowInSeconds": "maximum_batching_window",
    "FunctionResponseTypes": "function_response_types",
    "BisectBatchOnFunctionError": "bisect_batch_on_function_error",
    "MaximumRetryAttempts": "maximum_retry_attempts",
    "MaximumRecordAgeInSeconds": "maximum_record_age",
    "ParallelizationFactor": "parallelization_factor",
    "TumblingWindowInSeconds": "tumbling_window",
    "Enabled": "enabled",
}


class Event:
    """One event of a function: `props` are its resolved Properties, `at` where it is in the template."""

    def __init__(
        self,
        function: str,
        event_id: str,
        kind: str,
        props: dict[str, Any],
        at: tuple[Any, ...],
        bindings: Bindings,
        invoke: dict[str, Any],
    ) -> None:
        self.function = function
        self.event_id = event_id
        self.kind = kind
        self.props = props
        self.at = at
        self.bindings = bindings
        self.invoke = invoke  # the function's EventInvokeConfig (asynchronous sources)
        self.used: set[str] = set()
        self.marks: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # mapping field -> template path

    def take(self, key: str, field: tuple[Any, ...] | None = None) -> Any:
        """The property `key` (None when absent), marked as translated; `field` is the mapping setting it
        becomes, so that the hub's errors about that setting point at this property."""
        self.used.add(key)
        if field is not None and key in self.props:
            self.marks[field] = (*self.at, "Properties", key)
        return self.props.get(key)

    def required(self, key: str) -> Any:
        """Take a property the event cannot do without; SamError naming it when it is missing."""
        value = self.take(key)
        if value is None:
            raise SamError((*self.at, "Properties"), f"{self.kind} event needs {key}")
        return value

    def error(self, key: str, message: str) -> SamError:
        """A SamError located at one of the event's properties."""
        return SamError((*self.at, "Properties", key), message)


def mapping(event: Event) -> dict[str, Any]:
    """The hub mapping `event` stands for. Raises SamError."""
    build = _BUILDERS.get(event.kind)
    if build is None:
        raise SamError(
            (*event.at, "Type"),
            f"event type {event.kind} is not one the hub runs (it runs: {', '.join(SUPPORTED)}, and FunctionUrlConfig)",
        )
    out: dict[str, Any] = {"name": f"{event.function}-{event.event_id}", "function": event.function}
    out.update(build(event))
    for key in event.props:
        if key not in event.used and key not in IGNORED:
            raise event.error(key, f"{key} of a {event.kind} event is not supported by the hub")
    return out


def _esm(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, field in _ESM.items():
        value = event.take(key, (field,))
        if value is not None:
            out[field] = value
    criteria = event.take("FilterCriteria", ("filter_criteria",))
    if criteria is not None:
        filters = criteria.get("Filters") if isinstance(criteria, dict) else None
        if not isinstance(filters, list):
            raise event.error("FilterCriteria", "FilterCriteria takes {Filters: [{Pattern: ...}]}")
        out["filter_criteria"] = {
            "filters": [{"pattern": f.get("Pattern") if isinstance(f, dict) else f} for f in filters]
        }
    scaling = event.take("ScalingConfig", ("max_concurrency",))
    if isinstance(scaling, dict) and "MaximumConcurrency" in scaling:
        out["max_concurrency"] = scaling["MaximumConcurrency"]
    pollers = event.take("ProvisionedPollerConfig", ("provisioned_poller_config",))
    if isinstance(pollers, dict):
        out["provisioned_poller_config"] = {
            k: v
            for k, v in (
                ("minimum_pollers", pollers.get("MinimumPollers")),
                ("maximum_pollers", pollers.get("MaximumPollers")),
            )
            if v is not None
        }
    destination = event.take("DestinationConfig", ("destination_config",))
    if destination is not None:
        target = destination.get("OnFailure") if isinstance(destination, dict) else None
        if not isinstance(target, dict) or "Destination" not in target:
            raise event.error("DestinationConfig", "DestinationConfig takes {OnFailure: {Destination: ARN}}")
        out["destination_config"] = {
            "on_failure": destination_for(
                event.bindings, str(target["Destination"]), event.error("DestinationConfig", "")
            )
        }
    return out


def destination_for(bindings: Bindings, arn: str, error: SamError) -> dict[str, Any]:
    """The hub destination (or dead-letter target) an AWS ARN names: a queue, a bucket or a Kafka topic."""
    service = arn.split(":")[2] if arn.startswith("arn:") and arn.count(":") >= 2 else ""
    if service == "sqs" or arn.startswith(("http://", "https://")):
        return {"type": "sqs", "queue_name": name_in_arn(arn), "connection": bindings.connection}
    if service == "s3":
        return {"type": "s3", "bucket": name_in_arn(arn), "connection": bindings.connection}
    if arn.startswith("kafka://"):
        return {
            "type": "kafka",
            "topic": arn.removeprefix("kafka://"),
            "bootstrap_servers": bindings.kafka_servers(None),
        }
    error.message = f"the destination {arn!r} is not one the hub sends to (an SQS queue, an S3 bucket or kafka://)"
    error.args = (error.message,)
    raise error


def _starting(event: Event, source: dict[str, Any], default: str | None = None) -> None:
    position = event.take("StartingPosition", ("source", "starting_position")) or default
    if position is not None:
        source["starting_position"] = position
    timestamp = event.take("StartingPositionTimestamp", ("source", "starting_position_timestamp"))
    if timestamp is not None:
        source["starting_position_timestamp"] = timestamp


def _sqs(event: Event) -> dict[str, Any]:
    queue = str(event.required("Queue"))
    event.marks[("source",)] = (*event.at, "Properties", "Queue")
    source = {"type": "sqs", "queue_name": name_in_arn(queue), "connection": event.bindings.connection}
    return {"source": source, **_esm(event)}


def _kinesis(event: Event) -> dict[str, Any]:
    stream = str(event.required("Stream"))
    source = {"type": "kinesis", "stream_name": name_in_arn(stream), "connection": event.bindings.connection}
    _starting(event, source)
    return {"source": source, **_esm(event)}


def _dynamodb(event: Event) -> dict[str, Any]:
    stream = str(event.required("Stream"))
    source = {"type": "dynamodb", "table_name": name_in_arn(stream), "connection": event.bindings.connection}
    _starting(event, source)
    return {"source": source, **_esm(event)}


def _kafka(event: Event, managed: bool) -> dict[str, Any]:
    topics = event.required("Topics")
    if not isinstance(topics, list) or len(topics) != 1:
        raise event.error("Topics", "Topics takes exactly one topic, as AWS's")
    source: dict[str, Any] = {"type": "kafka", "topic": topics[0]}
    if managed:
        cluster = str(event.required("Stream"))
        source["cluster_arn"] = cluster
        source["bootstrap_servers"] = event.bindings.kafka_servers(event.bindings.logical_id(name_in_arn(cluster)))
        group = event.take("ConsumerGroupId", ("source", "consumer_group_id"))
    else:
        servers = event.take("KafkaBootstrapServers")
        bound = "kafka" in event.bindings.settings.model_fields_set
        source["bootstrap_servers"] = event.bindings.kafka_servers(None) if bound or not servers else servers
        config = event.take("SelfManagedKafkaEventSourceConfig") or {}
        group = config.get("ConsumerGroupId") if isinstance(config, dict) else None
    if group is not None:
        source["consumer_group_id"] = group
    _starting(event, source, "TRIM_HORIZON")
    return {"source": source, **_esm(event)}


def _mq(event: Event) -> dict[str, Any]:
    broker = str(event.required("Broker"))
    queues = event.required("Queues")
    if not isinstance(queues, list) or len(queues) != 1:
        raise event.error("Queues", "Queues takes exactly one queue, as AWS's")
    source: dict[str, Any] = {
        "type": "rabbitmq",
        "queue": queues[0],
        "url": event.bindings.rabbitmq_url(event.bindings.logical_id(name_in_arn(broker))),
    }
    for access in event.props.get("SourceAccessConfigurations") or []:
        if isinstance(access, dict) and access.get("Type") == "VIRTUAL_HOST":
            source["virtual_host"] = access.get("URI")
    return {"source": source, **_esm(event)}


def _asynchronous(event: Event, out: dict[str, Any], retry: Any = None) -> dict[str, Any]:
    """Retries, event age and the on-failure destination of an asynchronous invocation: the event's own
    RetryPolicy (schedules) over the function's EventInvokeConfig."""
    invoke = event.invoke
    attempts = (retry or {}).get("MaximumRetryAttempts", invoke.get("MaximumRetryAttempts"))
    age = (retry or {}).get("MaximumEventAgeInSeconds", invoke.get("MaximumEventAgeInSeconds"))
    if attempts is not None:
        out["maximum_retry_attempts"] = attempts
    if age is not None:
        out["maximum_event_age"] = age
    failure = (invoke.get("DestinationConfig") or {}).get("OnFailure")
    if isinstance(failure, dict) and "Destination" in failure:
        error = SamError((*event.at[:-2], "EventInvokeConfig"), "")
        out["destination_config"] = {"on_failure": destination_for(event.bindings, str(failure["Destination"]), error)}
    return out


def _s3(event: Event) -> dict[str, Any]:
    bucket = str(event.required("Bucket"))
    kinds = event.required("Events")
    source: dict[str, Any] = {"type": "files", "path": event.bindings.folder(bucket), "bucket": bucket}
    wanted: list[str] = []
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if str(kind).startswith("s3:ObjectCreated:"):
            wanted.append("created")
        elif str(kind).startswith("s3:ObjectRemoved:"):
            wanted.append("removed")
        else:
            raise event.error("Events", f"{kind}: the hub sends s3:ObjectCreated:* and s3:ObjectRemoved:* events")
    source["events"] = sorted(set(wanted))
    key = (event.take("Filter") or {}).get("S3Key") or {}
    rules = (key.get("Rules") if isinstance(key, dict) else None) or []
    if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
        raise event.error("Filter", "Filter is {S3Key: {Rules: [{Name: prefix | suffix, Value: ...}]}}")
    for rule in rules:
        name = str(rule.get("Name", "")).lower()
        if name not in ("prefix", "suffix"):
            raise event.error("Filter", "S3Key rules are {Name: prefix | suffix, Value: ...}")
        source[name] = rule.get("Value", "")
    return _asynchronous(event, {"source": source})


def _schedule(event: Event, service: str) -> dict[str, Any]:
    key = "Schedule" if service == "rule" else "ScheduleExpression"
    source: dict[str, Any] = {"type": "schedule", "service": service, "expression": event.required(key)}
    for prop, field in (
        ("Input", "input"),
        ("Name", "rule_name"),
        ("ScheduleExpressionTimezone", "timezone"),
        ("StartDate", "start_date"),
        ("EndDate", "end_date"),
    ):
        value = event.take(prop, ("source", field))
        if value is not None:
            source[field] = value
    out: dict[str, Any] = {"source": source}
    enabled, state = event.take("Enabled", ("enabled",)), event.take("State", ("enabled",))
    if enabled is not None:
        out["enabled"] = enabled
    elif state is not None:
        out["enabled"] = state == "ENABLED"
    letter = event.take("DeadLetterConfig", ("source", "dead_letter_config"))
    if isinstance(letter, dict):
        arn = letter.get("Arn")
        if arn is None and letter.get("Type") == "SQS":  # the queue SAM makes for it (hub/sam/resources.py too)
            queue = event.bindings.name(made_dead_letter_queue(event.function, event.event_id, letter))
            source["dead_letter_config"] = {"type": "sqs", "queue_name": queue, "connection": event.bindings.connection}
        elif arn is None:
            raise event.error("DeadLetterConfig", "DeadLetterConfig takes Arn (a queue's ARN) or Type: SQS")
        else:
            error = event.error("DeadLetterConfig", "")
            source["dead_letter_config"] = destination_for(event.bindings, str(arn), error)
    return _asynchronous(event, out, event.take("RetryPolicy"))


def made_dead_letter_queue(function: str, event_id: str, letter: dict[str, Any]) -> str:
    """The logical id of the queue SAM makes for a schedule's `DeadLetterConfig: {Type: SQS}`: its
    QueueLogicalId, else `<function><event>Queue`."""
    return str(letter.get("QueueLogicalId") or f"{function}{event_id}Queue")


def _http(event: Event, api: str) -> dict[str, Any]:
    path = event.take("Path") or ("$default" if api == "http" else None)
    if path is None:
        raise SamError((*event.at, "Properties"), "Api event needs Path")
    method = str(event.take("Method") or "ANY").upper()
    source: dict[str, Any] = {
        "type": "http",
        "method": "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
        "path": path,
        "api": api,
    }
    api_id = event.take("RestApiId" if api == "rest" else "ApiId")
    if api_id is not None:
        source["api_id"] = str(api_id)
        stage = (event.bindings.resources.get(str(api_id), {}).get("Properties") or {}).get("StageName")
        if stage is not None and not isinstance(stage, str) and event.bindings.resolve is not None:
            stage = event.bindings.resolve(stage, ("Resources", str(api_id), "Properties", "StageName"))
        if isinstance(stage, str):
            source["stage"] = stage
    elif api == "rest":
        source["stage"] = "Prod"
    return {"source": source}


_BUILDERS: dict[str, Callable[[Event], dict[str, Any]]] = {
    "SQS": _sqs,
    "Kinesis": _kinesis,
    "DynamoDB": _dynamodb,
    "MSK": lambda e: _kafka(e, managed=True),
    "SelfManagedKafka": lambda e: _kafka(e, managed=False),
    "MQ": _mq,
    "S3": _s3,
    "Schedule": lambda e: _schedule(e, "rule"),
    "ScheduleV2": lambda e: _schedule(e, "scheduler"),
    "Api": lambda e: _http(e, "rest"),
    "HttpApi": lambda e: _http(e, "http"),
}
