"""The configuration reference and JSON Schema, generated from the pydantic models (the one source of truth).

`hub schema` prints the JSON Schema; `hub schema --markdown` prints docs/configuration.md.
"""

from __future__ import annotations

import json
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from hub import registry
from hub.aws import AwsConnection
from hub.config import FileDestination, FunctionConfig, HubConfig, MappingConfig, S3EndpointConfig, full_model
from hub.source import ConnectorSpec
from hub.types import parse_duration

HEADER = """# Configuration reference

Generated from the configuration models by `hub schema --markdown`; do not edit by hand. The JSON Schema
(`hub schema`) is generated from the same models: point your editor's YAML support at `config/schema.json`.

Durations accept `500ms`, `30s`, `5m`, `1h`, `1d` or a number of seconds. `${VAR}` and `${VAR:-default}` expand
from the environment in any value (`$$` is a `$`; the default also replaces an empty variable). What a variable
gives is text, exactly as it is: never read as YAML, so `0123` stays `0123`, `yes` stays `yes` and `a #b` is not
cut at the `#`; a setting that wants a number or a boolean takes the text as it would a quoted `"500"`. A key
given twice in one mapping, YAML tags (`!Ref`) and merge keys (`<<`) are refused, with both places named.
Settings marked *secret* are never printed.
"""


SCALING = """
### Scaling a mapping over processes

One hub process reads, filters, batches and dispatches on one CPU core: a few hundred thousand records a second
at best. A mapping that needs more runs several pollers, as AWS's provisioned mode does:

```yaml
mappings:
  - name: orders
    function: orders
    source: {type: kafka, bootstrap_servers: "kafka:9092", topic: orders, starting_position: TRIM_HORIZON}
    provisioned_poller_config: {minimum_pollers: 4, maximum_pollers: 4}
```

`hub run` then runs the mapping in `minimum_pollers` processes: its own, and `minimum_pollers - 1` children
(`hub run CONFIG --poller NAME`) that run only that mapping, with its function and destination. The processes
share nothing; the broker shares the work among them, as among several hubs: a Kafka consumer group spreads the
partitions (pollers beyond the partition count stay idle), SQS, RabbitMQ and S3-notification queues give each
message to one of the competing consumers, a Redis stream consumer group gives each entry to one consumer
(leave `consumer_name` unset, so that each process is a consumer of its own), a NATS JetStream durable pull
consumer gives each message to one of the processes pulling from it, and an MQTT 5 shared subscription (`mqtt`
with `shared_group`) gives each message to one member of the group (each process connects with a client id of its
own: `-p<i>` is added for poller i). Kinesis and DynamoDB shards, schedules, watched folders and polled buckets are
shared through leases in the checkpoint store, which must then be one that several processes share
(`postgresql://` or `redis://`; docs/cluster.md): the pollers take part in the mapping's leases like any other
hub. SQS takes 2 to 200 pollers (2 by default), as on AWS. A connector of your own allows pollers by setting
`shares_work` on its `ConnectorSpec` (True, or a function of its config) when its broker shares the work, or
`leases` when it does not (`"source"`: one lease for the whole source; `"lanes"`: a lease per lane, taken through
`SourceContext.leases`).

- The hub restarts a poller that exits, after a jittered backoff that grows while it keeps failing, and logs
  the exit status as an error. On SIGTERM or SIGINT it stops every poller (SIGTERM, then SIGKILL after
  `shutdown_grace` + 10s) before it exits; a poller whose hub died stops by itself.
- Limits are per process: `max_concurrency` and a function's `concurrency` (its execution environments) apply
  in each poller, so N pollers may run N times as many invocations.
- Delivery does not change: at least once, in order per Kafka partition (a partition belongs to one process at
  a time); the records a killed poller had not settled are delivered again by whichever process reads them next.
- Log lines of poller 2 and up carry `poller=<i>`. The admin endpoint runs in the hub's process only: `/status`
  lists each mapping's `pollers` (pids, restarts); the counters there are that process's own, and every poller
  logs its totals when it stops.
- No autoscaling: `maximum_pollers` is validated (AWS's ranges) and accepted for compatibility, not used.
"""


S3_ENDPOINT = """
```yaml
s3_endpoint:
  listen: 127.0.0.1:0                  # the default: loopback, any free port
  buckets: {thumbnails: ./thumbnails}  # where results go; every `files` folder is served already
```

- Functions get `AWS_ENDPOINT_URL_S3` (the endpoint's URL: boto3 sends S3 calls there, and only S3 calls) and
  `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (the credentials it checks Signature Version 4 with; clients set
  for any region are accepted). Set `access_key_id` / `secret_access_key` when functions must sign with
  credentials of your own; otherwise the secret is new at every start and never logged.
- Operations: ListBuckets, HeadBucket, GetBucketLocation, ListObjectsV2 and ListObjects (prefix, delimiter,
  pages), GetObject (with `Range`), HeadObject, PutObject, CopyObject, DeleteObject, DeleteObjects, and multipart
  uploads (Create, UploadPart, UploadPartCopy, Complete, Abort), with S3's ETags and S3's XML errors
  (`NoSuchKey`, `NoSuchBucket`, `InvalidRange`, `EntityTooSmall`...). Buckets are the configured folders: they
  are not created or deleted through the endpoint. No versioning, ACLs, tagging or `aws-chunked` bodies.
- An object is a file: its key is its path under the folder, so keys with empty, `.` or `..` segments are
  refused, as are paths that symlinks lead outside the folder. Content type and `x-amz-meta-*` are kept beside
  the file; a file written by anything else gets the MD5 of its content and a type guessed from its name.
- Writes (and multipart parts) are staged under the folder's `.eventhub-s3/`, which is never listed, never an
  object and never an event, and renamed into place complete: a mapping on the folder fires once per object
  written, as an S3 notification would. A function that writes into the bucket that triggered it, under a key
  the mapping matches, triggers itself again, on S3 as here: write to another bucket, or to a prefix or suffix
  the mapping does not match.
- A poller process of a mapping with several pollers serves its own copy on a free port.
"""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a configuration with every installed connector and destination (`hub schema`)."""
    return full_model().model_json_schema()


def _type_name(field: FieldInfo) -> str:
    text = _show_type(field.annotation)
    if any(getattr(m, "func", None) is parse_duration for m in field.metadata):
        text = "duration"
    return text.replace("|", "\\|")


def _show_type(annotation: Any) -> str:
    """A readable type: `duration`, `int | None`, `list[str]`, `"a" | "b"`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        if any(getattr(m, "func", None) is parse_duration for m in args[1:]):
            return "duration"
        return _show_type(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(_show_type(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_show_type(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
        return "" if value is None else f"`{json.dumps(value, default=str)}`"
    if field.default_factory is not None:
        return ""
    return "**required**"


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    rows = ["| setting | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        description = (field.description or "").replace("\n", " ").replace("|", "\\|")
        if "SecretStr" in str(field.annotation):
            description = f"*secret.* {description}"
        rows.append(f"| `{name}` | {_type_name(field)} | {_default(field)} | {description} |")
    return "\n".join(rows)


def markdown() -> str:
    """docs/configuration.md, generated from the models (`hub schema --markdown`)."""
    parts = [HEADER, "## Top level\n", _table(HubConfig, skip=("functions", "mappings"))]
    parts += [
        "\n## s3_endpoint\n",
        (S3EndpointConfig.__doc__ or "").replace("\n    ", " ") + "\n",
        S3_ENDPOINT,
        _table(S3EndpointConfig),
    ]
    parts += ["\n## functions.NAME\n", _table(FunctionConfig)]
    parts += [
        "\n## mappings[]\n",
        "Which settings apply depends on the source's family (stream, queue or asynchronous); a setting that does "
        "not apply is an error.\n",
        _table(MappingConfig, skip=("source",)),
        SCALING.rstrip("\n"),
    ]
    specs: list[ConnectorSpec] = registry.all_specs(installed_only=True)
    for spec in specs:
        parts += [f"\n## source: type `{spec.type}` ({spec.family})\n", spec.summary + "\n", _table(spec.config)]
    parts += ["\n## destination_config.on_failure: type `file` (also a dead_letter_config)\n", _table(FileDestination)]
    parts += [
        "\n## AwsConnection (the `connection:` of AWS sources and destinations, a lambda function's `aws:`)\n",
        _table(AwsConnection),
    ]
    for dest in registry.all_destination_specs():
        also = " (also a dead_letter_config)" if dest.dead_letter else ""
        parts += [f"\n## destination_config.on_failure: type `{dest.type}`{also}\n", _table(dest.config)]
    return "\n".join(parts) + "\n"
