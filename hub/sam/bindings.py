"""Bindings: the local counterpart of each resource a SAM template refers to.

A bindings file (`hub-bindings.yaml` next to the template, or `--bindings FILE`) says where those live:

    aws: {endpoint_url: http://127.0.0.1:4566, region: us-east-1}   # queues, streams, tables (an emulator)
    account_id: "000000000000"                                       # in ARNs and queue URLs
    buckets: ./buckets               # a bucket is the folder buckets/<BucketName or logical id>
    kafka: {bootstrap_servers: "127.0.0.1:9092"}                     # MSK clusters, SelfManagedKafka
    rabbitmq: {url: "amqp://guest:guest@127.0.0.1:5672/"}            # Amazon MQ brokers
    http_server: {listen: "127.0.0.1:3000"}  # where Api, HttpApi and function URL routes are served (as sam local)
    create_resources: true           # `hub run` creates the template's missing queues, streams and tables on the
                                     # aws endpoint_url, and its buckets' folders (hub/sam/resources.py)
    resources:                       # per logical id, overriding the above
      OrdersQueue: {name: orders-local}
      Photos: {folder: /srv/photos}
      Cluster: {bootstrap_servers: "kafka:9092"}
      Hello: {listen: "127.0.0.1:3005"}   # a function URL (each is a host of its own: the http_server's port + 1,
                                          # + 2, ... in the template's order, unless given here)

Every key is optional; the defaults are the ones shown. A resource's name is its `QueueName`, `StreamName`
(`Name`), `TableName` or `BucketName` property, else its logical id, unless `resources.<id>.name` says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.sam.intrinsics import SamError

DEFAULT_FILE = "hub-bindings.yaml"

_NAME_PROPERTY = {
    "AWS::SQS::Queue": "QueueName",
    "AWS::Kinesis::Stream": "Name",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::MSK::Cluster": "ClusterName",
    "AWS::MSK::ServerlessCluster": "ClusterName",
    "AWS::AmazonMQ::Broker": "BrokerName",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceBinding(_Model):
    """Where one resource of the template lives here (`resources.<logical id>` of a bindings file)."""

    name: str | None = Field(None, description="The queue's, stream's, table's or bucket's local name.")
    folder: str | None = Field(None, description="A bucket: its folder.")
    bootstrap_servers: str | list[str] | None = Field(None, description="An MSK cluster: its brokers.")
    url: str | None = Field(None, description="An Amazon MQ broker: its RabbitMQ URL.")
    listen: str | None = Field(None, description="A function with a FunctionUrlConfig: the host:port of its URL.")


class KafkaBinding(_Model):
    """The brokers of MSK clusters and SelfManagedKafka sources that name none of their own."""

    bootstrap_servers: str | list[str] = "127.0.0.1:9092"


class RabbitBinding(_Model):
    """The broker of Amazon MQ sources that name none of their own."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"


class BindingsFile(_Model):
    """A bindings file, as written (every key optional)."""

    aws: dict[str, Any] = Field(default_factory=lambda: {"endpoint_url": "http://127.0.0.1:4566"})
    account_id: str = "000000000000"
    buckets: str = "./buckets"
    kafka: KafkaBinding = Field(default_factory=KafkaBinding)
    rabbitmq: RabbitBinding = Field(default_factory=RabbitBinding)
    http_server: dict[str, Any] | None = None
    create_resources: bool = Field(
        True,
        description="`hub run`: create the template's missing queues, streams and tables on the emulator at "
        "aws.endpoint_url, and its buckets' folders, before the mappings start (false: create nothing).",
    )
    resources: dict[str, ResourceBinding] = Field(default_factory=dict)


class Bindings:
    """What the template's resources are here: names, ARNs, URLs and folders."""

    def function_url(self, logical_id: str, index: int) -> str:
        """`host:port` of the index-th function URL (from 0): its own server, as a function URL is a host."""
        own = self.settings.resources.get(logical_id)
        if own is not None and own.listen:
            return own.listen
        shared = str((self.settings.http_server or {}).get("listen") or "127.0.0.1:3000")
        host, _, port = shared.rpartition(":")
        return f"{host}:{int(port) + 1 + index if int(port) else 0}"

    def __init__(self, settings: BindingsFile, resources: dict[str, Any], region: str) -> None:
        self.settings = settings
        self.resources = resources
        self.region = str(settings.aws.get("region") or region)
        self.account = settings.account_id
        self._naming: set[str] = set()  # the resources whose name is being resolved (a name that needs itself)
        # the template's intrinsic functions, for names given as `!Sub "${Prefix}-queue"` (set by the translator)
        self.resolve: Callable[[Any, tuple[Any, ...]], Any] | None = None

    @property
    def connection(self) -> dict[str, Any]:
        """The `connection:` of every AWS source and destination (and the functions' `aws:`)."""
        return {"region": self.region, **{k: v for k, v in self.settings.aws.items() if k != "region"}}

    def kind(self, logical_id: str) -> str:
        """The CloudFormation type of a template resource (`AWS::SQS::Queue`), "" when there is none."""
        resource = self.resources.get(logical_id)
        return str(resource.get("Type", "")) if isinstance(resource, dict) else ""

    def name(self, logical_id: str) -> str:
        """The resource's local name (see the module docstring)."""
        bound = self.settings.resources.get(logical_id)
        if bound is not None and bound.name:
            return bound.name
        props = self.resources.get(logical_id, {}).get("Properties") or {}
        prop = _NAME_PROPERTY.get(self.kind(logical_id), "")
        given = props.get(prop, None) if isinstance(props, dict) else None
        if given is not None and not isinstance(given, str) and self.resolve is not None:
            at = ("Resources", logical_id, "Properties", prop)
            # `QueueName: !Ref Self`, or two queues named after each other: graph.py refuses such a template before
            # translation; this stays as the guard of the recursion below
            if logical_id in self._naming:
                raise SamError(
                    at, f"{prop} refers back to {logical_id} itself (by Ref, Fn::GetAtt or Fn::Sub): name it"
                )
            self._naming.add(logical_id)
            try:
                given = self.resolve(given, at)
            finally:
                self._naming.discard(logical_id)
        return given if isinstance(given, str) else logical_id

    def folder(self, bucket: str) -> str:
        """A bucket's folder: bound by logical id or name, else <buckets>/<name>."""
        for logical_id, bound in self.settings.resources.items():
            if bound.folder and (logical_id == bucket or self.name(logical_id) == bucket):
                return bound.folder
        return str(Path(self.settings.buckets) / bucket)

    def kafka_servers(self, cluster: str | None) -> str | list[str]:
        """The brokers of an MSK cluster (by logical id), else the bindings' default brokers."""
        bound = self.settings.resources.get(cluster or "")
        if bound is not None and bound.bootstrap_servers:
            return bound.bootstrap_servers
        return self.settings.kafka.bootstrap_servers

    def rabbitmq_url(self, broker: str | None) -> str:
        """The URL of an Amazon MQ broker (by logical id), else the bindings' default URL."""
        bound = self.settings.resources.get(broker or "")
        return bound.url if bound is not None and bound.url else self.settings.rabbitmq.url

    def logical_id(self, name: str) -> str | None:
        """The template resource whose local name (or logical id) is `name`."""
        if name in self.resources:
            return name
        return next((lid for lid in self.resources if self.name(lid) == name), None)

    def arn(self, service: str, resource: str) -> str:
        """An ARN in the bindings' region and account."""
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def ref(self, logical_id: str, at: tuple[Any, ...]) -> Any:
        """`Ref: logical_id`, as CloudFormation answers it for the resource's type."""
        kind = self.kind(logical_id)
        if not kind:
            raise SamError(at, f"Ref {logical_id}: no parameter or resource of that name in the template")
        name = self.name(logical_id)
        if kind == "AWS::SQS::Queue":
            endpoint = str(self.settings.aws.get("endpoint_url") or f"https://sqs.{self.region}.amazonaws.com")
            return f"{endpoint.rstrip('/')}/{self.account}/{name}"
        if kind == "AWS::SNS::Topic":
            return self.arn("sns", name)
        if kind in ("AWS::MSK::Cluster", "AWS::MSK::ServerlessCluster"):
            return self.arn("kafka", f"cluster/{name}/00000000-0000-0000-0000-000000000000-1")
        if kind == "AWS::AmazonMQ::Broker":
            return name
        return name  # tables, streams, buckets, functions and the rest: their name

    def getatt(self, logical_id: str, attribute: str, at: tuple[Any, ...]) -> Any:
        """`Fn::GetAtt: [logical_id, attribute]` for the attributes event sources and handlers use."""
        kind = self.kind(logical_id)
        name = self.name(logical_id)
        answers: dict[tuple[str, str], Any] = {
            ("AWS::SQS::Queue", "Arn"): lambda: self.arn("sqs", name),
            ("AWS::SQS::Queue", "QueueName"): lambda: name,
            ("AWS::SQS::Queue", "QueueUrl"): lambda: self.ref(logical_id, at),
            ("AWS::Kinesis::Stream", "Arn"): lambda: self.arn("kinesis", f"stream/{name}"),
            ("AWS::DynamoDB::Table", "Arn"): lambda: self.arn("dynamodb", f"table/{name}"),
            ("AWS::DynamoDB::Table", "StreamArn"): lambda: self.arn("dynamodb", f"table/{name}/stream/latest"),
            ("AWS::Serverless::SimpleTable", "Arn"): lambda: self.arn("dynamodb", f"table/{name}"),
            ("AWS::S3::Bucket", "Arn"): lambda: f"arn:aws:s3:::{name}",
            ("AWS::S3::Bucket", "DomainName"): lambda: f"{name}.s3.amazonaws.com",
            ("AWS::SNS::Topic", "TopicArn"): lambda: self.arn("sns", name),
            ("AWS::Serverless::Function", "Arn"): lambda: self.arn("lambda", f"function:{name}"),
            ("AWS::MSK::Cluster", "Arn"): lambda: self.ref(logical_id, at),
            ("AWS::AmazonMQ::Broker", "Arn"): lambda: self.arn("mq", f"broker:{name}:b-{logical_id.lower()}"),
        }
        answer = answers.get((kind, attribute))
        if answer is None:
            what = f"a {kind}" if kind else "no resource of the template"
            raise SamError(
                at,
                f"Fn::GetAtt {logical_id}.{attribute}: {logical_id} is {what}; the hub has no local "
                "value for that attribute",
            )
        return answer()


def name_in_arn(arn: str) -> str:
    """The resource name an ARN (or a queue URL, or a plain name) ends with: `queue`, `stream/NAME`,
    `table/NAME/stream/...`, `cluster/NAME/uuid`, `broker:NAME:id`."""
    if arn.startswith(("http://", "https://")):
        return arn.rstrip("/").rsplit("/", 1)[-1]
    if not arn.startswith("arn:"):
        return arn
    resource = arn.split(":", 5)[-1] if arn.count(":") >= 5 else arn
    service = arn.split(":")[2] if arn.count(":") >= 2 else ""
    if service == "mq" and resource.startswith("broker:"):
        return resource.split(":")[1]
    parts = resource.split("/")
    if parts[0] in ("stream", "table", "cluster") and len(parts) > 1:
        return parts[1]
    return parts[-1]
