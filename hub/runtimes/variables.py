"""The environment variables of a function's execution environment, as Lambda sets them.

An environment sees the function's own `environment` (after `function_defaults.environment`), Lambda's reserved
variables, the execution role's credentials and endpoint as `aws:` gives them, and of the hub's own environment
only what running Python needs (PATH, HOME, locale): never another function's values or the hub's secrets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from hub.aws import AwsConnection

INHERITED = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "VIRTUAL_ENV")
"""What an execution environment takes from the hub's environment: enough to run Python, nothing else."""

RUNTIME_NAME = f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class FunctionSetup:
    """Everything a runtime needs to give a function Lambda's environment."""

    name: str
    handler: str
    memory_mb: int
    region: str
    task_root: str
    environment: Mapping[str, str] = field(default_factory=dict)
    """The function's variables: the hub's extras, then `function_defaults.environment`, then its own."""
    aws: AwsConnection = field(default_factory=AwsConnection)
    """The function's `aws`, with the unset fields taken from `function_defaults.aws`."""

    @property
    def aws_region(self) -> str:
        """The function's AWS_REGION: its `aws.region`, else the hub's region."""
        return self.aws.region or self.region

    def reserved(self, log_stream_name: str) -> dict[str, str]:
        """Lambda's reserved variables for one execution environment (its log stream is its own)."""
        region = self.aws_region
        values = {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": RUNTIME_NAME,
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
            "LAMBDA_TASK_ROOT": self.task_root,
            "LAMBDA_RUNTIME_DIR": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            "_HANDLER": self.handler,
        }
        values.update(self.role())
        return values

    def role(self) -> dict[str, str]:
        """The execution role's credentials and endpoint, as AWS's SDKs read them from the environment."""
        aws, values = self.aws, {}
        for name, secret in (
            ("AWS_ACCESS_KEY_ID", aws.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", aws.secret_access_key),
            ("AWS_SESSION_TOKEN", aws.session_token),
        ):
            if secret is not None:
                values[name] = secret.get_secret_value()
        if aws.endpoint_url:
            values["AWS_ENDPOINT_URL"] = aws.endpoint_url
        return values

    def variables(self, log_stream_name: str) -> dict[str, str]:
        """The whole environment of one execution environment (a worker process)."""
        values = {k: os.environ[k] for k in INHERITED if k in os.environ}
        values["TZ"] = ":UTC"  # Lambda's; a function's environment may set another
        values["LANG"] = values.get("LANG") or "en_US.UTF-8"
        paths = (self.task_root, *sys.path)
        values["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p and os.path.isdir(p)))
        values["PYTHONUNBUFFERED"] = "1"  # each line of output reaches the log as it is written
        values.update(self.environment)
        values.update(self.reserved(log_stream_name))
        return values


def merged_aws(own: AwsConnection, defaults: AwsConnection) -> AwsConnection:
    """`own`, with each field it does not set taken from `defaults`."""
    taken = {k: getattr(defaults, k) for k in defaults.model_fields_set if k not in own.model_fields_set}
    return own.model_copy(update=taken) if taken else own
