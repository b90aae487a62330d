"""Functions: what runs a handler (`runtime`), Lambda's per-function limits, and the environment it gets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from hub.aws import AwsConnection
from hub.config.base import Model
from hub.source import SettingError
from hub.types import Duration

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
    """Refuse variables that Lambda sets itself (RESERVED_VARIABLES)."""
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

    model_config = ConfigDict(defer_build=True)  # built once: as the joined model (loading.config_model)

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
            raise SettingError((needs,), f"required with runtime: {self.runtime}")
        if self.runtime == "lambda":
            import importlib.util

            if importlib.util.find_spec("aioboto3") is None:
                raise SettingError(("runtime",), "runtime: lambda needs aioboto3: pip install 'eventhub[aws]'")
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
