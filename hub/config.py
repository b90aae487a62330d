"""The configuration models and `load_config`: one YAML file, validated before anything starts.

Every error names the file, the line and the field. Connector models live next to their connectors and are
joined here into one discriminated union on `source.type`.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from hub import registry
from hub.aws import AwsConnection
from hub.source import ConnectorSpec, Family
from hub.types import Duration
from hub.yamlsource import ConfigError, Located, dotted, load

__all__ = ["ConfigError", "FunctionConfig", "HubConfig", "MappingConfig", "load_config"]

_SENSITIVE = re.compile(r"pass|secret|token|key|credential|auth", re.I)
# Lambda's Python handler: a module path (file names may hold hyphens; `dir/file` for a sub-folder) and a function
_HANDLER = re.compile(r"^[\w-]+(?:[./][\w-]+)*\.[A-Za-z_]\w*$")
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
"""Variables Lambda sets itself and refuses in a function's configuration; the hub sets them the same way."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _AtError(ValueError):
    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def environment_values(value: Any) -> Any:
    """CloudFormation's reading of `Environment.Variables`: a YAML boolean or number is its text (`false`, `3`)."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int | float):
            item = str(item)
        out[key] = item
    return out


def check_not_reserved(environment: dict[str, str]) -> dict[str, str]:
    reserved = sorted(RESERVED_VARIABLES.intersection(environment))
    if reserved:
        raise ValueError(
            f"{', '.join(reserved)}: reserved by Lambda, which sets {'them' if len(reserved) > 1 else 'it'} itself "
            "(the hub does too: region from `region` or `aws.region`, credentials from `aws:`, the rest from the "
            "function's settings)"
        )
    return environment


Environment = Annotated[dict[str, str], BeforeValidator(environment_values), AfterValidator(check_not_reserved)]
"""A function's `environment`: text values, as CloudFormation reads them, and none of Lambda's reserved names."""


class FunctionConfig(Model):
    """A function: what runs it (`runtime`) and Lambda's per-function limits, the same for every runtime."""

    runtime: Literal["python", "in-process", "http", "lambda"] = Field(
        "python",
        description="`python` (default): Lambda's execution model: each execution environment is a warm worker "
        "process that imports the handler once and runs one invocation at a time, with the function's own "
        "environment (killed at the timeout, memory-limited); `in-process`: the hub's own process, faster but "
        "shared (see the docs); `http`: POST the event to `url`; `lambda`: invoke a real AWS Lambda function. "
        "`process` is an older name of `python`.",
    )
    handler: str | None = Field(
        None,
        description="python/in-process: the handler as Lambda takes it, `file.function` (`app.handler`, "
        "`my-function.lambda_handler`, `src/app.handler`, `functions.resize.handler`), found in `code_uri`.",
    )
    code_uri: str | None = Field(
        None,
        description="python/in-process: the function's code folder, its LAMBDA_TASK_ROOT (SAM's CodeUri), "
        "relative to the configuration file's folder. Default: the folder the hub runs in.",
    )
    timeout: Duration = Field(3.0, gt=0, le=900, description="An invocation fails after this long (Lambda: 3s).")
    memory: int = Field(
        128, ge=128, le=10240, description="MB: `context.memory_limit_in_mb`; a hard limit with runtime: python."
    )
    concurrency: int | None = Field(
        None,
        ge=0,
        description="Reserved concurrency shared by every mapping; 0 disables the function. With runtime: python, "
        "the most execution environments the function has (default 32; each is started when an invocation finds "
        "none idle, as on Lambda).",
    )
    in_process_concurrency: int = Field(
        1,
        ge=1,
        le=1000,
        description="in-process: invocations that may run the handler at once. 1 (default) keeps Lambda's rule of "
        "one invocation at a time per environment. More enters the handler's module from several threads (or "
        "tasks, for `async def` handlers) at once: only for handlers written for that (module-level state such as "
        "a Powertools BatchProcessor is not).",
    )
    environment: Environment = Field(
        default_factory=dict,
        description="The function's environment variables (Lambda's `Environment.Variables`). A YAML boolean or "
        "number is taken as its text, as CloudFormation does. Lambda's reserved variables are set by the hub.",
    )
    aws: AwsConnection = Field(
        default_factory=lambda: AwsConnection(),
        description="python/in-process: what the function's AWS SDK gets, as Lambda hands over the execution "
        "role: `access_key_id`, `secret_access_key`, `session_token` (AWS_ACCESS_KEY_ID, ...), `endpoint_url` "
        "(AWS_ENDPOINT_URL) and `region` (AWS_REGION; default: the hub's `region`); unset fields come from "
        "`function_defaults.aws`. lambda: where the Lambda API is.",
    )
    url: str | None = Field(None, description="http: where to POST the event.")
    headers: dict[str, str] = Field(default_factory=dict, description="http: extra request headers.")
    authorization_env: str | None = Field(
        None, description="http: name of an environment variable whose value is sent as the Authorization header."
    )
    function_name: str | None = Field(None, description="lambda: the function's name or ARN.")
    qualifier: str | None = Field(None, description="lambda: a version or alias.")
    dead_letter_config: Any = Field(
        None,
        description="Lambda's DeadLetterConfig: where the event of an asynchronous invocation (files, schedule, s3 "
        "sources) goes when it is given up, unmodified, with the message attributes RequestID, ErrorCode and "
        "ErrorMessage: `{type: sqs, queue_url: ...}`, or `{type: file, path: ...}` for JSON lines "
        '`{"Body": event, "MessageAttributes": {...}}`. Also sent when the mapping has an on_failure destination.',
    )
    description: str = ""

    @field_validator("runtime", mode="before")
    @classmethod
    def _older_names(cls, value: Any) -> Any:
        return "python" if value == "process" else value

    @field_validator("handler")
    @classmethod
    def _handler_shape(cls, value: str | None) -> str | None:
        if value is not None and not _HANDLER.match(value):
            raise ValueError(
                f"{value!r} is not a handler as Lambda takes it: `file.function` (app.handler, "
                "my-function.lambda_handler, src/app.handler, package.module.handler)"
            )
        return value

    @field_validator("code_uri")
    @classmethod
    def _code_folder(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_dir():
            raise ValueError(f"no folder {value!r} (a relative code_uri is taken from the configuration's folder)")
        return value

    @model_validator(mode="after")
    def _runtime_settings(self) -> FunctionConfig:
        needs = {"python": "handler", "in-process": "handler", "http": "url", "lambda": "function_name"}[self.runtime]
        if getattr(self, needs) is None:
            raise _AtError((needs,), f"required with runtime: {self.runtime}")
        if self.runtime == "lambda":
            import importlib.util

            if importlib.util.find_spec("aioboto3") is None:
                raise _AtError(("runtime",), "runtime: lambda needs aioboto3: pip install 'eventhub[aws]'")
        return self


class FunctionDefaults(Model):
    """Settings every function shares unless it sets its own (SAM's `Globals: Function`)."""

    environment: Environment = Field(
        default_factory=dict,
        description="Variables every function gets; a function's own `environment` wins over these.",
    )
    aws: AwsConnection = Field(
        default_factory=lambda: AwsConnection(),
        description="The credentials, endpoint and region handed to every function (each field a function's "
        "`aws` does not set).",
    )


class FileDestination(Model):
    """JSON lines, one AWS failure record per line, fsynced."""

    type: Literal["file"]
    path: str = Field(description="File to append the records to (created with its folder).")


class DestinationConfig(Model):
    on_failure: Any = Field(None, description="Where records go when the mapping gives up on them: `{type: ...}`.")


class FilterEntry(Model):
    pattern: Any = Field(description="An EventBridge pattern, as an object or a JSON string.")


class FilterCriteria(Model):
    filters: list[FilterEntry] = Field(default_factory=list, max_length=10)


ALL_FAMILIES: frozenset[Family] = frozenset({"stream", "queue", "async", "sync"})
# Which mapping settings apply to which source family (AWS allows exactly these per kind of source).
APPLIES: dict[str, frozenset[Family]] = {
    "batch_size": frozenset({"stream", "queue"}),
    "maximum_batching_window": frozenset({"stream", "queue"}),
    "maximum_retry_attempts": frozenset({"stream", "async"}),
    "maximum_event_age": frozenset({"async"}),
    "maximum_record_age": frozenset({"stream"}),
    "bisect_batch_on_function_error": frozenset({"stream"}),
    "function_response_types": frozenset({"stream", "queue"}),
    "parallelization_factor": frozenset({"stream"}),
    "tumbling_window": frozenset({"stream"}),
    "max_receive_count": frozenset({"queue"}),
}
FAMILY_DEFAULTS: dict[Family, dict[str, Any]] = {
    "stream": {"batch_size": 100, "maximum_batching_window": 0.0, "maximum_retry_attempts": -1},
    "queue": {"batch_size": 10, "maximum_batching_window": 0.0, "max_concurrency": 5},
    "async": {"batch_size": 1, "maximum_batching_window": 0.0, "maximum_retry_attempts": 2, "max_concurrency": 10},
    "sync": {"batch_size": 1, "maximum_batching_window": 0.0},
}
SYNC_REFUSES = ("max_concurrency", "retry_delay", "maximum_retry_delay", "filter_criteria", "destination_config")
"""Settings of a mapping that a synchronous source does not take: AWS invokes RequestResponse once per request."""


class ProvisionedPollerConfig(Model):
    """AWS's provisioned mode for a mapping: dedicated event pollers. A poller here is an OS process."""

    minimum_pollers: int = Field(
        None,  # type: ignore[assignment]  # None: the source's minimum (1; SQS: 2), see MappingConfig.pollers
        ge=1,
        le=200,
        description="Processes that poll this mapping; the hub's own process is the first (AWS: 1-200, default 1; "
        "SQS: 2-200, default 2).",
    )
    maximum_pollers: int = Field(
        200,
        ge=1,
        le=2000,
        description="At least minimum_pollers (AWS: 1-2000). Validated and accepted for AWS compatibility: the hub "
        "does not autoscale and runs minimum_pollers.",
    )

    @model_validator(mode="after")
    def _max_not_below_min(self) -> ProvisionedPollerConfig:
        if self.minimum_pollers is not None and self.maximum_pollers < self.minimum_pollers:
            raise _AtError(
                ("maximum_pollers",),
                f"{self.maximum_pollers} is less than minimum_pollers ({self.minimum_pollers})",
            )
        return self


class MappingConfig(Model):
    """One event source mapping. The settings are AWS's, in snake_case."""

    name: str | None = Field(None, description="Stable name (checkpoints are kept under it). Default: function-type.")
    function: str = Field(description="Name of a function under `functions:`.")
    enabled: bool = Field(True, description="false: the mapping does not run (its checkpoints are kept).")
    batch_size: int | None = Field(None, ge=1, le=10000, description="Most records per invocation.")
    maximum_batching_window: Duration | None = Field(
        None, le=300, description="Longest wait for a batch to fill, counted from its first record."
    )
    maximum_retry_attempts: int | None = Field(
        None, ge=-1, le=10000, description="Retries after function errors (-1: until the record expires)."
    )
    maximum_event_age: Duration | None = Field(
        None, gt=0, le=21600, description="Asynchronous sources: give up on events older than this (default 6h)."
    )
    maximum_record_age: Duration | None = Field(None, description="Streams: give up on records older than this.")
    bisect_batch_on_function_error: bool = Field(
        False, description="Streams: split a failing batch in two and retry each half (does not use up retries)."
    )
    function_response_types: list[Literal["ReportBatchItemFailures"]] = Field(
        default_factory=list, max_length=1, description="[ReportBatchItemFailures]: the function may name failed items."
    )
    parallelization_factor: int = Field(
        1, ge=1, le=10, description="Streams: batches of one lane in flight at once (order kept per partition key)."
    )
    tumbling_window: Duration | None = Field(
        None, ge=0, le=900, description="Streams: aggregate in windows of this length, with state between invocations."
    )
    max_concurrency: int | None = Field(
        None, ge=1, le=1000, description="Most invocations of this mapping in flight at once."
    )
    max_receive_count: int | None = Field(None, ge=1, description="Queues: deliveries before the destination.")
    retry_delay: Duration = Field(
        1.0, ge=0, description="First retry delay; doubles each attempt, with jitter (AWS async uses 60s)."
    )
    maximum_retry_delay: Duration = Field(300.0, ge=0, description="Cap on the retry delay.")
    filter_criteria: (
        Annotated[
            Annotated[FilterCriteria, Tag("FilterCriteria")] | Annotated[list[Any], Tag("list")],
            # a mapping is AWS's form, anything else the list: one branch, so errors speak of the form written
            Discriminator(lambda value: "FilterCriteria" if isinstance(value, dict | FilterCriteria) else "list"),
        ]
        | None
    ) = Field(None, description="EventBridge patterns, ORed: a list, or AWS's {filters: [{pattern: ...}]}.")
    destination_config: DestinationConfig = Field(
        default_factory=lambda: DestinationConfig(), description="`on_failure`: where given-up records go."
    )
    provisioned_poller_config: ProvisionedPollerConfig | None = Field(
        None,
        description="AWS's ProvisionedPollerConfig, `{minimum_pollers: 1-200 (default 1; sqs: 2-200, default 2), "
        "maximum_pollers: 1-2000, "
        "at least minimum_pollers (default 200)}`: run the mapping in minimum_pollers OS processes (the hub's and "
        "minimum_pollers - 1 children it restarts and stops) that share the work through the broker's own "
        "coordination: kafka (consumer group), sqs and rabbitmq (competing consumers), redis (stream consumer group), "
        "s3 with mode: notifications. The hub does not autoscale: maximum_pollers is validated, for AWS "
        "compatibility, and not used. Kafka: pollers beyond the partition count stay idle.",
    )

    source: Any = Field(description="The event source: `type:` names the connector.")

    @property
    def patterns(self) -> list[Any]:
        criteria = self.filter_criteria
        if criteria is None:
            return []
        if isinstance(criteria, FilterCriteria):
            return [entry.pattern for entry in criteria.filters]
        return list(criteria)

    @property
    def spec(self) -> ConnectorSpec:
        return registry.get(self.source.type)

    def setting(self, name: str) -> Any:
        """A batching or retry setting: the one written in YAML, else the connector's default, else AWS's."""
        value = getattr(self, name)
        if value is not None:
            return value
        spec = self.spec
        if name in spec.defaults:
            return spec.defaults[name]
        return FAMILY_DEFAULTS[spec.family].get(name)

    @model_validator(mode="after")
    def _check_family(self) -> MappingConfig:
        spec = self.spec
        for name, families in APPLIES.items():
            if name in self.model_fields_set and spec.family not in families:
                raise _AtError((name,), f"does not apply to {spec.type} sources ({_FAMILY_WORDS[spec.family]})")
        if spec.family == "sync":
            for name in SYNC_REFUSES:
                if name in self.model_fields_set:
                    raise _AtError((name,), f"does not apply to {spec.type} sources ({_FAMILY_WORDS['sync']})")
        if (provisioned := self.provisioned_poller_config) is not None:
            if not self.shares_work and self.leases is None:
                raise _AtError(("provisioned_poller_config",), self._not_shared())
            least = spec.minimum_pollers
            if provisioned.minimum_pollers is None and provisioned.maximum_pollers < least:
                raise _AtError(
                    ("provisioned_poller_config", "maximum_pollers"),
                    f"{provisioned.maximum_pollers} is less than minimum_pollers ({least}, the default)",
                )
            if provisioned.minimum_pollers is not None and provisioned.minimum_pollers < least:
                raise _AtError(
                    ("provisioned_poller_config", "minimum_pollers"),
                    f"{spec.type} sources take {least} to 200 (as on AWS), not {provisioned.minimum_pollers}",
                )
        if self.pollers > 1 and self.source.type == "redis" and getattr(self.source, "consumer_name", None):
            raise _AtError(
                ("source", "consumer_name"),
                f"with {self.pollers} pollers every process needs a consumer of its own, and a fixed name would make "
                "them one (each reading the others' pending entries again): leave it unset (`hostname-pid`)",
            )
        if self.filter_criteria is not None:
            from hub.filtering import FilterSet, PatternError

            try:
                FilterSet.compile(self.patterns)
            except PatternError as exc:
                # point at the offending value itself: the filter, and the place inside its pattern
                at: tuple[Any, ...] = ("filter_criteria",)
                if exc.index is not None:
                    wrapped = isinstance(self.filter_criteria, FilterCriteria)
                    at = (*at, "filters", exc.index, "pattern") if wrapped else (*at, exc.index)
                inside = "" if exc.parts or exc.path in ("", "(root)") else f"{exc.path}: "
                raise _AtError((*at, *exc.parts), f"{inside}{exc.reason}") from None
        return self

    @property
    def display_name(self) -> str:
        return self.name or f"{self.function}-{self.source.type}"

    @property
    def shares_work(self) -> bool:
        """True when the source's broker shares the work between several processes reading this mapping: the
        connector says so (ConnectorSpec.shares_work)."""
        shares = self.spec.shares_work
        return shares(self.source) if callable(shares) else shares

    @property
    def leases(self) -> Literal["source", "lanes"] | None:
        """How hubs sharing a store share this mapping's work through leases (ConnectorSpec.leases): `source`, one
        lease for the whole source; `lanes`, one per lane; None when the broker shares it, or nothing can."""
        if self.shares_work:
            return None
        leases = self.spec.leases
        return leases(self.source) if callable(leases) else leases

    @property
    def pollers(self) -> int:
        """How many processes run this mapping (provisioned_poller_config.minimum_pollers, else 1)."""
        config = self.provisioned_poller_config
        if config is None:
            return 1
        return self.spec.minimum_pollers if config.minimum_pollers is None else config.minimum_pollers

    def _not_shared(self) -> str:
        return (
            f"does not apply to {self.source.type} sources: pollers share a mapping's work through the broker's own "
            "consumer coordination (kafka, sqs, redis, rabbitmq, s3 with mode: notifications) or through leases in a "
            "shared checkpoint store (kinesis, dynamodb, schedule, files, s3 with mode: poll)"
        )


_FAMILY_WORDS = {
    "async": "each event is its own asynchronous invocation, as S3 and EventBridge invoke Lambda",
    "queue": "a queue source",
    "stream": "a stream source",
    "sync": "each request is one synchronous invocation: no batching, retries, filters or destinations",
}


class AdminConfig(Model):
    """The admin HTTP endpoint: /status (JSON), /metrics (Prometheus), /healthz."""

    listen: str = Field("127.0.0.1:9180", pattern=r"^[^:]+:\d+$", description="`host:port` to listen on.")


class S3EndpointConfig(Model):
    """An S3-compatible endpoint over local folders, so that handlers written for Lambda read and write the objects
    their events name with boto3, unchanged. It serves each `files` mapping's folder as the bucket its events name,
    plus `buckets`, and starts only when there is one to serve. Functions find it in `AWS_ENDPOINT_URL_S3`."""

    enabled: bool = Field(
        True, description="Serve the folders when there is one (a `files` mapping or `buckets`); false: never."
    )
    listen: str = Field(
        "127.0.0.1:0",
        pattern=r"^[^:]+:\d+$",
        description="`host:port` to listen on; port 0 takes any free port (functions are told which).",
    )
    buckets: dict[str, str] = Field(
        default_factory=dict,
        description="More buckets, `{name: folder}`: where functions write results that no mapping watches.",
    )
    access_key_id: str = Field("eventhub", description="The access key id requests must be signed with.")
    secret_access_key: SecretStr | None = Field(
        None, description="The secret requests must be signed with. Default: a new random one at every start."
    )

    @field_validator("buckets")
    @classmethod
    def _bucket_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", name):
                raise ValueError(f"{name!r} is not a bucket name: use letters, digits, '.', '-' and '_'")
        return value


class HttpServerConfig(Model):
    """The one HTTP server every `http` mapping is served on, as one API Gateway host serves many routes."""

    listen: str = Field(
        "127.0.0.1:3000", pattern=r"^[^:]+:\d+$", description="`host:port` to listen on; port 0 takes any free port."
    )


class ClusterConfig(Model):
    """Several hubs sharing one checkpoint store (PostgreSQL or Redis): how they share leases."""

    failover_time: Duration = Field(
        10.0,
        ge=1.0,
        le=600.0,
        description="A hub that dies loses its leases (shards, schedules, folders, polled buckets), and the others "
        "take them over from the last checkpoint, within this time. A lease lasts 0.7 x this after each renewal, and "
        "hubs renew and rebalance every 0.1 x. Shorter fails over faster and writes to the store more often.",
    )


class HubConfig(Model):
    """The whole hub."""

    checkpoints: str = Field(
        "sqlite:///.hub/state.db",
        description="`sqlite:///path` (default: one hub), `postgresql://user:password@host:port/db` (the store "
        "that several hubs share; `?schema=NAME` keeps its tables in that schema), `redis://host:port/db` (also "
        "shared, off this disk), or `memory://` (forgets on exit). A password in the URL is a secret.",
    )
    region: str = Field("us-east-1", description="AWS region written into events and ARNs.")
    account_id: str = Field("000000000000", pattern=r"^\d{12}$", description="AWS account id for ARNs.")
    shutdown_grace: Duration = Field(30.0, description="On SIGTERM/SIGINT, how long in-flight work may finish.")
    admin: AdminConfig | None = Field(
        None, description="Serve /status, /metrics and /healthz over HTTP (off when unset)."
    )
    cpu_affinity: bool | list[int] = Field(
        False,
        description="Deprecated, ignored (the hub warns, naming the file and line): it pinned each hub process to "
        "a CPU, which did not make the default configuration faster (bench/README.md). Still accepted: `true`, "
        "`false` or a list of CPU numbers.",
    )
    function_defaults: FunctionDefaults = Field(
        default_factory=lambda: FunctionDefaults(), description="What every function gets unless it sets its own."
    )
    s3_endpoint: S3EndpointConfig = Field(
        default_factory=lambda: S3EndpointConfig(),
        description="The S3-compatible endpoint over the `files` folders that functions reach with boto3 (on by "
        "default, on loopback, when there is a folder to serve).",
    )
    http_server: HttpServerConfig = Field(
        default_factory=lambda: HttpServerConfig(),
        description="Where `http` mappings are served (started only when there is one).",
    )
    cluster: ClusterConfig = Field(
        default_factory=lambda: ClusterConfig(),
        description="Several hubs on one shared store (`checkpoints: postgresql://...` or `redis://...`): they share "
        "shards, schedules, folders and polled buckets through leases. Ignored with sqlite and memory stores.",
    )
    functions: dict[str, FunctionConfig] = Field(default_factory=dict)
    mappings: list[MappingConfig] = Field(default_factory=list)

    @field_validator("cpu_affinity", mode="before")
    @classmethod
    def _cpus(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):  # text from a `${VAR}`
            return value.lower() == "true"
        if isinstance(value, list) and value and all(type(cpu) is int and cpu >= 0 for cpu in value):
            return value
        if isinstance(value, list) and not value:
            raise ValueError("name at least one CPU, or use true (every CPU the hub may use) or false (off)")
        raise ValueError(f"use true, false or a list of CPU numbers such as [0, 1], not {value!r}")

    @field_validator("checkpoints")
    @classmethod
    def _store_url(cls, value: str) -> str:
        import importlib.util

        shared = ("redis://", "rediss://", "postgresql://", "postgres://")
        if not (value.startswith(("sqlite:///", *shared)) or value == "memory://"):
            raise ValueError(
                "use sqlite:///path/to/state.db, postgresql://user@host:5432/db, redis://host:6379/0 or memory://"
            )
        if value.startswith(("redis://", "rediss://")) and importlib.util.find_spec("redis") is None:
            raise ValueError("a redis checkpoint store needs redis-py: pip install 'eventhub[redis]'")
        if value.startswith(("postgresql://", "postgres://")):
            if importlib.util.find_spec("asyncpg") is None:
                raise ValueError("a postgresql checkpoint store needs asyncpg: pip install 'eventhub[postgres]'")
            from hub.postgres_store import split_url

            split_url(value)  # a bad ?schema= is refused at load, not at the first write
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> HubConfig:
        seen: dict[str, int] = {}
        for i, mapping in enumerate(self.mappings):
            if mapping.function not in self.functions:
                known = ", ".join(sorted(self.functions)) or "none defined"
                raise _AtError(("mappings", i, "function"), f"no function {mapping.function!r} (functions: {known})")
            name = mapping.display_name
            if name in seen:
                raise _AtError(
                    ("mappings", i, "name"),
                    f"two mappings are named {name!r} (mappings[{seen[name]}] and mappings[{i}]): give each a "
                    "distinct `name:` (checkpoints are kept under it)",
                )
            seen[name] = i
            if mapping.pollers > 1 and mapping.leases is not None and not self.shared_store:
                raise _AtError(
                    ("mappings", i, "provisioned_poller_config"),
                    f"{mapping.source.type} pollers share the work through leases in the checkpoint store, and "
                    f"{self.checkpoints.partition(':')[0]} is a store of one process: use checkpoints: "
                    "postgresql://... or redis://...",
                )
        self._in_process_variables_agree()
        self.s3_buckets()
        return self

    @property
    def shared_store(self) -> bool:
        """True when the checkpoint store is one several hub processes share (PostgreSQL, Redis)."""
        return self.checkpoints.startswith(("redis://", "rediss://", "postgresql://", "postgres://"))

    def _in_process_variables_agree(self) -> None:
        """In-process functions share the hub's environment: one variable cannot hold two functions' values."""
        owner: dict[str, tuple[str, str]] = {}
        for name, function in self.functions.items():
            if function.runtime != "in-process":
                continue
            for key, value in {**self.function_defaults.environment, **function.environment}.items():
                if key in owner and owner[key][1] != value:
                    raise _AtError(
                        ("functions", name, "environment", key),
                        f"in-process functions share the hub's environment, and function {owner[key][0]!r} gives "
                        f"{key} another value: use `runtime: python` (the default), where each function has its own",
                    )
                owner.setdefault(key, (name, value))

    def s3_buckets(self) -> dict[str, str]:
        """{bucket: absolute folder} the S3 endpoint serves: empty when it is off or has nothing to serve. Two
        folders under one bucket name are an error."""
        if not self.s3_endpoint.enabled:
            return {}
        buckets = {name: str(Path(folder).absolute()) for name, folder in self.s3_endpoint.buckets.items()}
        for i, mapping in enumerate(self.mappings):
            spec = registry.get(mapping.source.type)
            if not mapping.enabled or spec.buckets is None:
                continue
            for name, folder in spec.buckets(mapping.source).items():
                if buckets.setdefault(name, folder) != folder:
                    raise _AtError(
                        ("mappings", i, "source", "bucket"),
                        f"bucket {name!r} is already the folder {buckets[name]}: the S3 endpoint serves one folder "
                        "per bucket name (set `bucket:` to tell them apart)",
                    )
        return buckets


@cache
def config_model(
    types: tuple[str, ...], destinations: tuple[str, ...] = (), dead_letters: tuple[str, ...] = ()
) -> type[HubConfig]:
    """HubConfig whose `mappings[].source` is the union of the named connectors' models, whose
    `destination_config.on_failure` is the union of `file` and the named connectors' destinations, and whose
    `functions[].dead_letter_config` is the union of `file` and the named dead-letter destinations."""
    models = tuple(registry.get(t).config for t in types)
    dest_models: tuple[Any, ...] = (FileDestination, *tuple(registry.get_destination(t).config for t in destinations))
    source_type: Any = _union(models) if models else Any  # no mappings (validate reports sources without a type)
    destination = create_model(
        "DestinationConfig", __base__=DestinationConfig, on_failure=(_union(dest_models) | None, None)
    )
    mapping = create_model(
        "MappingConfig",
        __base__=MappingConfig,
        source=(source_type, ...),
        destination_config=(destination, Field(default_factory=destination)),
    )
    dlq_models: tuple[Any, ...] = (FileDestination, *tuple(registry.get_destination(t).config for t in dead_letters))
    function = create_model(
        "FunctionConfig", __base__=FunctionConfig, dead_letter_config=(_union(dlq_models) | None, None)
    )
    return create_model(
        "HubConfig",
        __base__=HubConfig,
        mappings=(list[mapping], []),
        functions=(dict[str, function], Field(default_factory=dict)),
    )


def _union(models: tuple[Any, ...]) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007


def full_model() -> type[HubConfig]:
    """The model of every installed connector and destination (for the JSON Schema)."""
    return config_model(
        tuple(spec.type for spec in registry.all_specs(installed_only=True)),
        tuple(spec.type for spec in registry.all_destination_specs()),
        tuple(spec.type for spec in registry.all_destination_specs() if spec.dead_letter),
    )


def validate(located: Located) -> HubConfig:
    """Validate a parsed document; raises ConfigError with every problem located."""
    data = located.data
    if not isinstance(data, dict):
        raise ConfigError([f"{located.where(())}: the configuration must be a mapping (key: value)"])
    errors: list[str] = []
    types: set[str] = set()
    destinations: set[str] = set()
    mappings = data.get("mappings")
    # Only a list of mappings is looked into here; anything else is left to the model, which says what it wants.
    for i, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        if not isinstance(mapping, dict):
            continue
        source = mapping.get("source")
        if isinstance(source, dict):
            _source_type(located, ("mappings", i, "source"), source.get("type"), types, errors)
        else:
            at: tuple[Any, ...] = ("mappings", i, "source")
            what = "required" if source is None else "must be a mapping"
            errors.append(
                f"{located.where(at)}: {dotted(at)}: {what}: `{{type: ..., ...}}` (types: "
                f"{', '.join(registry.names())})"
            )
        dest = mapping.get("destination_config")
        target = dest.get("on_failure") if isinstance(dest, dict) else None
        dest_kind = target.get("type") if isinstance(target, dict) else None
        if isinstance(dest_kind, str) and dest_kind != "file":
            dest_at: tuple[Any, ...] = ("mappings", i, "destination_config", "on_failure", "type")
            _usable(located, dest_at, dest_kind, "destination type", "one of", DESTINATIONS, destinations, errors)
    dead_letters = _dead_letter_types(located, errors)
    if errors:
        raise ConfigError(errors)
    _resolve_code_uris(data, Path(located.path).parent)
    # always the joined model, even without mappings: a function's dead_letter_config is checked too
    model = config_model(tuple(sorted(types)), tuple(sorted(destinations)), tuple(sorted(dead_letters)))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(located, err) for err in exc.errors()]) from None


def _source_type(located: Located, at: tuple[Any, ...], kind: Any, types: set[str], errors: list[str]) -> None:
    """Check a mapping's `source.type` (a source that is not a mapping is left to the model): add a usable one
    to `types`, a problem to `errors`."""
    at = (*at, "type")
    if kind is None:
        errors.append(f"{located.where(at)}: {dotted(at)}: required (one of: {', '.join(registry.names())})")
    else:
        _usable(located, at, kind, "source type", "installed", SOURCES, types, errors)


SOURCES = (registry.names, registry.get)
DESTINATIONS = (registry.destination_names, registry.get_destination)


def _usable(
    located: Located,
    at: tuple[Any, ...],
    kind: Any,
    noun: str,
    listed: str,
    lookup: tuple[Any, Any],
    found: set[str],
    errors: list[str],
) -> None:
    """A connector or destination `type` at `at`: add a usable one to `found`; an unknown one, or one whose
    optional library is missing, is a problem in `errors`."""
    names, get = lookup
    if not isinstance(kind, str) or kind not in names():
        errors.append(f"{located.where(at)}: {dotted(at)}: unknown {noun} {kind!r} ({listed}: {', '.join(names())})")
        return
    found.add(kind)
    missing = _missing(get(kind))
    if missing:
        errors.append(f"{located.where(at)}: {dotted(at)}: {missing}")


def _resolve_code_uris(data: dict[str, Any], folder: Path) -> None:
    """A relative `code_uri` names a folder next to the configuration file, as SAM's CodeUri does."""
    functions = data.get("functions")
    if not isinstance(functions, dict):
        return
    for function in functions.values():
        code_uri = function.get("code_uri") if isinstance(function, dict) else None
        if isinstance(code_uri, str) and code_uri and not Path(code_uri).is_absolute():
            function["code_uri"] = str((folder / code_uri).resolve())


def _dead_letter_types(located: Located, errors: list[str]) -> set[str]:
    """The destination types the functions' `dead_letter_config` name (besides `file`); problems go to `errors`."""
    functions = located.data.get("functions")
    found: set[str] = set()
    for name, function in functions.items() if isinstance(functions, dict) else ():
        target = function.get("dead_letter_config") if isinstance(function, dict) else None
        kind = target.get("type") if isinstance(target, dict) else None
        if kind is None or kind == "file":
            continue
        at: tuple[Any, ...] = ("functions", name, "dead_letter_config", "type")
        usable = [spec.type for spec in registry.all_destination_specs() if spec.dead_letter]
        if kind not in usable:
            errors.append(
                f"{located.where(at)}: {dotted(at)}: {kind!r} cannot be a dead-letter queue: it has no message "
                f"attributes to carry RequestID, ErrorCode and ErrorMessage (one of: file, {', '.join(usable)})"
            )
            continue
        found.add(kind)
        missing = _missing(registry.get_destination(kind))
        if missing:
            errors.append(f"{located.where(at)}: {dotted(at)}: {missing}")
    return found


def _missing(spec: Any) -> str:
    """Why `spec` cannot run here (an optional dependency is not installed), or ""."""
    import importlib.util

    absent = [name for name in spec.requires if importlib.util.find_spec(name) is None]
    if not absent:
        return ""
    return (
        f"the {spec.type} {'connector' if isinstance(spec, ConnectorSpec) else 'destination'} needs "
        f"{', '.join(absent)}, which is not installed: pip install 'eventhub[{spec.extra}]' "
        "(or 'eventhub[all]'; `make test` installs every extra)"
    )


def _describe(located: Located, err: Any) -> str:
    loc = tuple(err["loc"])
    message = err["msg"]
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _AtError):
        loc = loc + ctx_error.loc
        message = str(ctx_error)
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown setting (check its spelling; settings are AWS's names in snake_case)"
    elif err["type"] in _CONTAINERS:
        message = f"{_CONTAINERS[err['type']]}, not {_kind(err.get('input'))}"
    show_input = err["type"] not in {"extra_forbidden", "missing", "value_error", *_CONTAINERS} and "input" in err
    if loc and loc[-1] == "[key]":  # a key that is not text (`1:`, `true:`): pydantic adds this marker
        loc, message, show_input = loc[:-1], "this key must be text (quote it)", False
    # drop pydantic's union tags (`source.files.path` -> `source.path`, `on_failure.sqs.queue_url` -> ...)
    tags = {
        "source": set(registry.names()),
        "on_failure": set(registry.destination_names()),
        "dead_letter_config": {"file", *registry.destination_names()},
        "filter_criteria": {"FilterCriteria", "list"},
    }
    shown = tuple(
        p for i, p in enumerate(loc) if not (i and isinstance(loc[i - 1], str) and p in tags.get(loc[i - 1], ()))
    )
    if show_input:
        shown_input = err["input"]
        if not isinstance(shown_input, dict | list) and not _SENSITIVE.search(dotted(shown)):
            message = f"{message} (got {json.dumps(shown_input, default=str)})"
    return f"{located.where(loc)}: {dotted(shown)}: {message}"


_CONTAINERS = {
    "list_type": "must be a list (items written `- ...`, or `[a, b]`)",
    "dict_type": "must be a mapping (`key: value` lines, or `{key: value}`)",
    "model_type": "must be a mapping (`key: value` lines, or `{key: value}`)",
    "model_attributes_type": "must be a mapping (`key: value` lines, or `{key: value}`)",
}


def _kind(value: Any) -> str:
    """What a YAML value is, in words that never show the value itself (it may be a secret)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else "text"


def load_config(path: str | Path, env: dict[str, str] | None = None) -> HubConfig:
    """Load and validate a configuration file. Raises ConfigError."""
    return validate(load(path, env))
