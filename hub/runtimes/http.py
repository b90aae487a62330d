"""`runtime: http`: POST the event as JSON to a URL.

A 2xx answer with a JSON body (or an empty one, read as null) is the function's result; anything else is a
failed invocation that names the status. The request carries Lambda's request id and deadline as headers.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from hub.runtimes import LambdaContext, Result, error_payload


class HttpRuntime:
    def __init__(self, url: str, *, headers: dict[str, str], authorization_env: str | None, function_name: str):
        self.url = url
        self.headers = {"Content-Type": "application/json", **headers}
        self.authorization_env = authorization_env
        self.function_name = function_name
        self._session: Any = None

    async def start(self) -> None:
        import aiohttp

        if self.authorization_env:
            token = os.environ.get(self.authorization_env)
            if token is None:
                from hub.runtimes.python import HandlerLoadError

                raise HandlerLoadError(
                    f"function {self.function_name!r}: environment variable {self.authorization_env} "
                    "(authorization_env) is not set"
                )
            self.headers["Authorization"] = token
        self._session = aiohttp.ClientSession()

    async def invoke(self, event: Any, context: LambdaContext) -> Result:
        import aiohttp

        started = time.perf_counter()
        request_id = context.aws_request_id
        headers = {
            **self.headers,
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + context.get_remaining_time_in_millis()),
            "Lambda-Runtime-Invoked-Function-Arn": context.invoked_function_arn,
        }

        def failed(kind: str, message: str, error: str = "Unhandled") -> Result:
            return Result(False, error_payload(kind, message), time.perf_counter() - started, request_id, error)

        try:
            async with self._session.post(
                self.url, data=json.dumps(event), headers=headers, timeout=aiohttp.ClientTimeout(total=context.timeout)
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            return failed("Sandbox.Timedout", f"Task timed out after {context.timeout:.2f} seconds", "Timeout")
        except aiohttp.ClientError as exc:
            return failed("Http.ConnectionError", f"POST {self.url}: {type(exc).__name__}: {exc}")
        if not 200 <= status < 300:
            snippet = body[:500].decode(errors="replace")
            return failed("Http.StatusError", f"POST {self.url} answered {status}: {snippet}")
        if not body.strip():
            return Result(True, None, time.perf_counter() - started, request_id)
        try:
            payload = json.loads(body)
        except ValueError:
            return failed("Http.InvalidResponse", f"POST {self.url} answered {status} with a body that is not JSON")
        return Result(True, payload, time.perf_counter() - started, request_id)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
