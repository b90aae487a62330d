"""`runtime: lambda`: invoke a real AWS Lambda function (RequestResponse) through the Lambda API.

A `FunctionError` in the answer is a failed invocation whose error is the function's payload; a throttle or an
API error is a failed invocation naming it.
"""

from __future__ import annotations

import json
import time
from contextlib import AsyncExitStack
from typing import Any

from hub.aws import AwsConnection, client
from hub.runtimes import LambdaContext, Result, error_payload


class LambdaRuntime:
    """Runs a function by invoking a real AWS Lambda function (RequestResponse): its payload and FunctionError are
    the result."""

    def __init__(self, function_name: str, *, qualifier: str | None, connection: AwsConnection, region: str):
        self.function_name = function_name
        self.qualifier = qualifier
        self.connection = connection
        self.region = region
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def start(self) -> None:
        """Make the Lambda client."""
        self._client = await self._stack.enter_async_context(client(self.connection, "lambda", self.region))

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        """Invoke the function once; an API error (throttled, not found) is a failed invocation, never raised."""
        import botocore.exceptions

        started = time.perf_counter()
        args: dict[str, Any] = {
            "FunctionName": self.function_name,
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(event).encode(),
        }
        if self.qualifier:
            args["Qualifier"] = self.qualifier
        try:
            response = await self._client.invoke(**args)
            body = await response["Payload"].read()
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            kind = error.get("Code", "Lambda.ClientError")
            outcome = "Throttled" if kind == "TooManyRequestsException" else "Unhandled"
            return Result(
                False,
                error_payload(kind, error.get("Message", str(exc))),
                time.perf_counter() - started,
                context.aws_request_id,
                outcome,
            )
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            return Result(
                False,
                error_payload("Lambda.ConnectionError", str(exc)),
                time.perf_counter() - started,
                context.aws_request_id,
                "Unhandled",
            )
        request_id = response.get("ResponseMetadata", {}).get("RequestId") or context.aws_request_id
        try:
            payload = json.loads(body) if body else None
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads
            payload = body.decode(errors="replace")
        duration = time.perf_counter() - started
        if response.get("FunctionError"):
            if not isinstance(payload, dict):
                payload = error_payload("Unhandled", str(payload))
            return Result(False, payload, duration, request_id, "Unhandled")
        return Result(True, payload, duration, request_id)

    async def close(self) -> None:
        """Close the Lambda client."""
        await self._stack.aclose()
