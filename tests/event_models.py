"""Events the hub emits, checked against the parser models of Powertools for AWS Lambda (Python), the models
handler authors parse AWS's events with: `conforms(model, event)` fails the test if the model rejects the event
or if the event has a key the model does not declare (the models themselves ignore unknown keys).

Which model stands for which source (and variant) is `MODELS`; sources no Powertools model describes are in
`NO_MODEL`, each with the reason."""

from __future__ import annotations

import copy
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from aws_lambda_powertools.utilities.parser import models
from pydantic import BaseModel

MODELS: dict[tuple[str, str | None], type[BaseModel]] = {
    ("files", None): models.S3Model,
    ("s3", None): models.S3Model,
    ("schedule", None): models.EventBridgeModel,
    ("schedule", "scheduler"): models.EventBridgeModel,
    ("sqs", None): models.SqsModel,
    ("kinesis", None): models.KinesisDataStreamModel,
    ("dynamodb", None): models.DynamoDBStreamModel,
    ("postgres", None): models.DynamoDBStreamModel,
    ("kafka", None): models.KafkaSelfManagedEventModel,
    ("kafka", "msk"): models.KafkaMskEventModel,
    ("http", None): models.APIGatewayProxyEventModel,
    ("http", "http"): models.APIGatewayProxyEventV2Model,
    ("http", "url"): models.LambdaFunctionUrlModel,
}
"""(source type, `hub events` variant) -> the Powertools model of the event AWS sends for it."""

NO_MODEL = {
    "redis": "the hub's own shape (docs/events/redis.md): SQS-like, with `data` fields instead of SQS's `body`",
    "rabbitmq": "Powertools has no parser model for Amazon MQ; its RabbitMQEvent data class reads the event",
    "mqtt": "an AWS IoT rule's Lambda action sends the message's payload itself (`SELECT *`): no envelope to model",
    "nats": "AWS has no NATS source: the hub's own shape (docs/events/nats.md), SQS-like, with base64 `data`",
    "memory": "the hub's own shape (docs/events/memory.md) for its in-process streams and queues: SQS-like, `data`",
}


def conforms(model: type[BaseModel], event: Any) -> BaseModel:
    """Parse `event` with `model` (raises pydantic's ValidationError, naming the fields, if it rejects it) and
    assert that every key of the event is one the model declares."""
    parsed = model.model_validate(copy.deepcopy(event))  # some validators rewrite their input (Kafka headers)
    unknown = undeclared(model, event)
    assert not unknown, f"{model.__name__} does not know these keys of the event: {unknown}"
    return parsed


def undeclared(model: type[BaseModel], value: Any, path: str = "") -> list[str]:
    """The keys of `value` (JSON) that `model` declares nowhere, as dotted paths."""
    if not isinstance(value, Mapping):
        return []
    fields: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        fields[name] = fields[field.alias or name] = field.annotation
    out: list[str] = []
    for key, item in value.items():
        if key not in fields:
            out.append(path + key)
        else:
            out += _walk(fields[key], item, f"{path}{key}.")
    return out


def _walk(annotation: Any, value: Any, path: str) -> list[str]:
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return undeclared(annotation, value, path)
    if origin is Annotated:
        return _walk(args[0], value, path)
    if origin in (Union, types.UnionType):  # the member that explains the value best
        return min((_walk(arg, value, path) for arg in args), key=len)
    if origin in (list, Sequence) and isinstance(value, list) and args:
        return [key for i, item in enumerate(value) for key in _walk(args[0], item, f"{path}{i}.")]
    if origin in (dict, Mapping) and isinstance(value, Mapping) and len(args) == 2:
        return [key for name, item in value.items() for key in _walk(args[1], item, f"{path}{name}.")]
    return []  # a scalar, Any, Literal or a raw dict: nothing under it to declare
